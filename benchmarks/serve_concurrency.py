"""`tunelens serve` under 8 concurrent clients: hf micro-batching against the llamacpp backend.

For each backend a real server is started in a child process (``tunelens.serve.background.
ServerProcess``: uvicorn on loopback, SQLite storage, guardrails as configured by default, rate
limit off), one warm-up request is sent, then ``--clients`` threads each send ``--requests``
chat completions one after another (closed loop, greedy, ``--max-tokens``; every client its own
prompts). Backends alternate over ``--rounds`` rounds so that load from other jobs on the machine
hits both alike. Reported per backend (medians over rounds): requests/s, generated tokens/s,
p50 and p95 request latency, and the ratio llamacpp / hf.

The server batches with ``batching.max_batch_size`` (default 8, the serve default) and
``max_wait_ms`` 10 either way: hf generates a micro-batch with ``model.generate``; llamacpp with
its continuous-batching decoder (tunelens.generate.backends). ``--threads`` sets the server's
``torch_threads``, which the llama.cpp backend follows too.

    python benchmarks/serve_concurrency.py [--model smollm2-135m] [--backends hf,llamacpp:q8_0]
        [--clients 8] [--requests 4] [--max-tokens 32] [--rounds 2] [--threads N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

QUESTIONS = [
    "Give three tips for staying healthy.", "What is the capital of France?", "Describe a sunset in one sentence.",
    "Explain what a neural network is.", "Write a haiku about autumn.", "Name two uses of copper.",
    "How do plants make food?", "Suggest a name for a bakery.", "What is 12 times 7?",
    "Summarise the plot of Cinderella.", "Why is the sky blue?", "List three primary colours.",
    "What does a compiler do?", "Give an example of a mammal that lays eggs.", "Translate 'good morning' into French.",
    "Why do we have seasons?",
]


def server_config(model: str, backend: str, quant: str, db: Path, threads: int | None, batch: int) -> dict:
    cfg = {"models": [{"name": "m", "path": model}], "db_url": f"sqlite:///{db}", "rate_limit": {"enabled": False},
           "batching": {"max_batch_size": batch, "max_wait_ms": 10, "backend": backend, "quant": quant}}
    if threads:
        cfg["torch_threads"] = threads
    return cfg


def api_key(db: Path) -> str:
    from tunelens.serve.db import Store
    from tunelens.serve.keys import create_key

    store = Store(f"sqlite:///{db}")
    try:
        return create_key(store, "bench").key
    finally:
        store.close()


def load(url: str, key: str, clients: int, requests: int, max_tokens: int) -> dict:
    """``clients`` threads, ``requests`` sequential chat completions each; latency per request."""
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def client(idx: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as http:
            start_gate.wait()
            for n in range(requests):
                question = QUESTIONS[(idx * requests + n) % len(QUESTIONS)]
                t0 = time.perf_counter()
                r = http.post("/v1/chat/completions", json={
                    "model": "m", "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": question}]})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt)
                        tokens.append(int(r.json()["usage"]["completion_tokens"]))
                    else:
                        errors.append(f"{r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"requests": len(lat), "errors": errors, "wall_s": round(wall, 2),
            "req_per_s": len(lat) / wall, "tok_per_s": sum(tokens) / wall, "completion_tokens": sum(tokens),
            "p50_s": statistics.median(lat) if lat else None,
            "p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else None}


def one_server(args, label: str, backend: str, quant: str, work: Path) -> dict:
    from tunelens.serve.background import ServerProcess

    db = work / f"{label.replace(' ', '-')}-{time.monotonic_ns()}.db"
    key = api_key(db)
    cfg = server_config(args.model, backend, quant, db, args.threads, args.batch)
    with ServerProcess(cfg, work, startup_timeout=900) as srv:
        warm = load(srv.url, key, 1, 1, args.max_tokens)  # loads lazily built state (GGUF context, caches)
        if warm["errors"]:
            raise SystemExit(f"{label}: warm-up failed: {warm['errors'][0]}\n{srv.log_tail()}")
        result = load(srv.url, key, args.clients, args.requests, args.max_tokens)
    result["load_average"] = round(os.getloadavg()[0], 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--backends", default="hf,llamacpp:q8_0", help="comma-separated: hf, llamacpp:<quant>")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4, help="sequential requests per client per round")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8, help="the server's batching.max_batch_size")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="the server's torch_threads (llama.cpp follows it)")
    ap.add_argument("--out", type=Path, default=Path("test-artifacts/serve_concurrency.json"))
    args = ap.parse_args()

    from tunelens.generate.backends import llama_cpp_available

    variants = []
    for text in (v.strip() for v in args.backends.split(",") if v.strip()):
        backend, _, quant = text.partition(":")
        if backend == "llamacpp" and not llama_cpp_available():
            print("llama-cpp-python is not installed: llamacpp skipped", file=sys.stderr)
            continue
        variants.append((backend if backend == "hf" else f"{backend} {quant or 'q8_0'}", backend, quant or "q8_0"))
    print(f"model {args.model}; {args.clients} clients x {args.requests} requests x {args.max_tokens} tokens; "
          f"server batch {args.batch}; torch_threads {args.threads or 'default'}; load {os.getloadavg()[0]:.2f}",
          flush=True)
    rounds: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for label, backend, quant in order:
                res = one_server(args, label, backend, quant, Path(tmp))
                rounds[label].append(res)
                print(f"round {r + 1} {label:14s} {res['requests']} ok, {len(res['errors'])} errors, "
                      f"{res['wall_s']:.1f}s, {res['req_per_s']:.2f} req/s, {res['tok_per_s']:.1f} tok/s, "
                      f"p50 {res['p50_s']:.2f}s p95 {res['p95_s']:.2f}s, load {res['load_average']}", flush=True)
    summary = {}
    for label, results in rounds.items():
        summary[label] = {k: round(statistics.median(r[k] for r in results), 3)
                          for k in ("req_per_s", "tok_per_s", "p50_s", "p95_s")}
        summary[label]["errors"] = sum(len(r["errors"]) for r in results)
    ref = variants[0][0]
    print(f"\n| backend | req/s | generated tok/s | p50 s | p95 s | throughput vs {ref} |")
    print("|---|---|---|---|---|---|")
    for label, s in summary.items():
        ratio = s["req_per_s"] / summary[ref]["req_per_s"]
        print(f"| {label} | {s['req_per_s']:.2f} | {s['tok_per_s']:.1f} | {s['p50_s']:.2f} | {s['p95_s']:.2f} | "
              f"{ratio:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rounds": rounds, "summary": summary}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
