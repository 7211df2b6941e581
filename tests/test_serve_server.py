"""A real uvicorn server in a child process, on loopback: load test and crash-during-write test."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import httpx

from tunelens.serve.background import ServerProcess
from tunelens.serve.db import Store
from tunelens.serve.keys import create_key

LOAD_SECONDS = float(os.environ.get("TUNELENS_LOAD_SECONDS", "60"))
CLIENTS = 20
REPO = Path(__file__).resolve().parents[1]


def _config(db: Path, **extra) -> dict:
    return {"models": [{"name": "tiny", "path": "tiny-random"}], "db_url": f"sqlite:///{db}",
            "rate_limit": {"enabled": False}, "batching": {"max_batch_size": 8, "max_wait_ms": 10},
            "torch_threads": 1, **extra}  # the test's clients share the two cores with the server


def _key(db: Path) -> str:
    store = Store(f"sqlite:///{db}")
    try:
        return create_key(store, "tests").key
    finally:
        store.close()


async def _client_loop(url: str, key: str, deadline: float, stats: dict, idx: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", json={
                "model": "tiny", "max_tokens": 8,
                "messages": [{"role": "user", "content": f"client {idx} question {n}: what is {n} plus {idx}?"}]})
            stats["latency"].append(time.perf_counter() - t0)
            stats["status"].append(r.status_code)
            if r.status_code != 200:
                continue
            fb = await client.post("/v1/feedback", json={"completion_id": r.json()["id"], "rating": "up" if n % 2 else "down",
                                                         "correction": f"corrected {idx}-{n}"})
            stats["status"].append(fb.status_code)
            if fb.status_code == 200:
                stats["feedback_ok"] += 1


def test_load_20_clients_no_5xx_no_lost_feedback(tmp_path):
    db = tmp_path / "load.db"
    key = _key(db)
    stats = {"latency": [], "status": [], "feedback_ok": 0}
    with ServerProcess(_config(db), tmp_path) as srv:
        async def run():
            deadline = time.monotonic() + LOAD_SECONDS
            await asyncio.gather(*(_client_loop(srv.url, key, deadline, stats, i) for i in range(CLIENTS)))

        started = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - started
    five_xx = [s for s in stats["status"] if s >= 500]
    assert not five_xx, f"{len(five_xx)} 5xx responses"
    assert all(s == 200 for s in stats["status"]), sorted(set(stats["status"]))
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM feedback").fetchone()[0]
        exchanges = conn.execute("SELECT count(*) FROM exchanges").fetchone()[0]
    assert stats["feedback_ok"] > 0 and stored == stats["feedback_ok"]
    assert exchanges == len(stats["latency"])
    lat = sorted(stats["latency"])
    p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
    summary = {"clients": CLIENTS, "seconds": round(elapsed, 1), "requests": len(lat), "feedback_stored": stored,
               "p50_s": round(p50, 3), "p95_s": round(p95, 3), "req_per_s": round(len(lat) / elapsed, 2),
               "load_avg": os.getloadavg()}
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps(summary, indent=2))
    print("serve load:", summary)


def test_kill_9_mid_stream_keeps_committed_feedback(tmp_path):
    db = tmp_path / "crash.db"
    key = _key(db)
    headers = {"Authorization": f"Bearer {key}"}
    # Output guardrails off: real token-by-token streaming, so the kill lands mid-generation.
    cfg = _config(db, guardrails={"toxicity": {"enabled": False}, "pii": {"redact_output": False}})
    acked: list[int] = []
    srv = ServerProcess(cfg, tmp_path).start()
    try:
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as client:
            cid = client.post("/v1/chat/completions", json={
                "model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]}).json()["id"]
            stop = threading.Event()

            def writer():  # keeps feedback writes in flight while the server dies
                with httpx.Client(base_url=srv.url, headers=headers, timeout=5) as c:
                    while not stop.is_set():
                        try:
                            r = c.post("/v1/feedback", json={"completion_id": cid, "correction": "x" * 200})
                        except httpx.HTTPError:
                            return
                        if r.status_code == 200:
                            acked.append(r.json()["id"])

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(1.0)
            with client.stream("POST", "/v1/chat/completions", json={
                    "model": "tiny", "max_tokens": 400, "stream": True,
                    "messages": [{"role": "user", "content": "Write a very long story."}]}) as r:
                lines = r.iter_lines()
                got = [next(lines) for _ in range(6)]
                assert all(ln == "" or ln.startswith("data: ") for ln in got)
                srv.kill_hard()
            stop.set()
            thread.join(10)
    finally:
        srv.kill_hard()
    assert len(acked) > 5
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT id FROM feedback")}
    finally:
        conn.close()
    assert set(acked) <= stored, f"lost {len(set(acked) - stored)} committed feedback rows"
    # the restarted server opens the same database (migrations are idempotent) and serves it
    with ServerProcess(cfg, tmp_path) as again:
        with httpx.Client(base_url=again.url, headers=headers, timeout=30) as client:
            r = client.post("/v1/feedback", json={"completion_id": cid, "rating": "up"})
            assert r.status_code == 200 and r.json()["id"] > max(acked)
