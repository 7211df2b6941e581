"""Generation backends: one interface, the same ``GenerationParams`` in and ``GenerationResult`` out.

- ``hf``: transformers in fp32, the reference. Exact, and what everything that needs gradients
  uses (explain, training). A PEFT adapter is merged into its base before generating: LoRA's
  unmerged matmuls cost more than half the speed (14.6 vs 24.2 tok/s measured in a default run).
- ``llamacpp``: llama-cpp-python on a GGUF exported from the model (``tunelens export``), f16 or
  q8_0 by default for quality (``quant="auto"``: f16 where llama.cpp was built with AVX-512, else
  q8_0, see :func:`resolve_quant`). The build is checked against this CPU first
  (``tunelens.generate.cpu``). The prompt is rendered and tokenised by the model's own HF
  tokenizer and the reply decoded by it too, so prompt tokens, stop strings, token counts and
  finish reasons come from the same code as ``hf`` (``engine._result``). Optional: without the
  package, ``auto`` falls back to ``hf`` and says so.
- ``vllm``: vLLM on CUDA GPUs (never in CPU installs).
- ``auto``: ``vllm`` on a CUDA machine that has it, else ``llamacpp`` when importable, else ``hf``.

``load_backend(spec, name)`` resolves the model spec once and returns a :class:`Backend`;
``backend.info`` says which backend, quantisation and GGUF (sha256) produce the generations,
and is part of the evaluation cache key, so answers from different backends are never mixed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tunelens.errors import ConfigError, TunelensError
from tunelens.generate.engine import (
    GenerationParams,
    GenerationResult,
    Prompt,
    _result,
    encode_prompts,
    too_long_result,
)

log = logging.getLogger("tunelens.generate")

BACKENDS = ("hf", "llamacpp", "vllm", "auto")
GGUF_QUANTS = ("f32", "f16", "q8_0", "q4_k_m")
QUANT_CHOICES = (*GGUF_QUANTS, "auto")
DEFAULT_GGUF_QUANT = "auto"  # see resolve_quant


@dataclass(frozen=True)
class BackendInfo:
    """What produced a generation: recorded in results and part of the generation cache key."""

    backend: str
    model: str
    quant: str | None = None  # "fp32" for hf, the GGUF type for llamacpp, the dtype for vllm
    gguf: str | None = None
    gguf_sha256: str | None = None
    note: str | None = None  # e.g. why auto chose what it chose
    build: str | None = None  # llamacpp: the llama-cpp-python version and instruction sets it was compiled for

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cache_key(self) -> dict[str, Any]:
        """The fields that change outputs (the GGUF's path does not; its content does; nor does a note)."""
        key = {"backend": self.backend, "quant": self.quant, "gguf_sha256": self.gguf_sha256}
        if self.build is not None:  # absent for hf and vllm, whose keys stay as they were
            key["build"] = self.build
        return key


class Backend:
    """A loaded model that generates; subclasses implement ``generate`` (and ``close`` if they hold native resources)."""

    name = "base"

    def __init__(self, tokenizer: Any, info: BackendInfo, context: int | None, eos_ids: list[int]):
        self.tokenizer = tokenizer
        self.info = info
        self.context = context
        self.eos_ids = eos_ids

    def encode(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[tuple[list[int], str | None]]:
        """Prompts rendered and tokenised by the HF tokenizer, as the engine does (one code path)."""
        return encode_prompts(self.tokenizer, prompts, params, self.context)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None,
                 progress: bool = False) -> list[GenerationResult]:
        """One result per prompt, in input order (``engine.generate``'s contract)."""
        raise NotImplementedError

    def close(self) -> None:
        """Free native resources (llama.cpp contexts); nothing for backends without them."""


def _progress(enabled: bool, total: int):
    if not enabled:
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("generating"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), transient=True)
    bar.start()
    return bar, bar.add_task("generating", total=total)


def _stops_hit(tokenizer: Any, new_ids: list[int], stops: list[str]) -> bool:
    return bool(stops) and any(s in tokenizer.decode(new_ids, skip_special_tokens=True) for s in stops)


class HFBackend(Backend):
    """transformers, fp32: batched through ``engine.generate`` (the reference)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, info: BackendInfo):
        from tunelens.generate.engine import _eos_ids, context_limit

        super().__init__(tokenizer, info, context_limit(model), _eos_ids(model, tokenizer))
        self.model = model

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None,
                 progress: bool = False) -> list[GenerationResult]:
        from tunelens.generate.engine import generate

        return generate(self.model, self.tokenizer, prompts, params, progress=progress)


class LlamaCppBackend(Backend):
    """llama.cpp on a GGUF with continuous batching: up to ``parallel`` sequences share each decode.

    llama-cpp-python's high-level ``Llama`` decodes one sequence at a time; on a CPU a batch of
    sequences costs little more per step than one (the weights are read once per step), so this
    drives llama.cpp's own batch API: every active sequence adds its next token to one
    ``llama_batch``, one ``llama_decode`` runs them all, and a finished sequence's slot is
    refilled with the next prompt at once. Sampling (greedy, or seeded temperature / top-p per
    prompt) is done here on the logits, so every backend samples the same way.

    Two things keep the decodes full (measured in docs/benchmarks.md, "Continuous batching without
    holes"): the active sequences always sit on seq ids 0..n-1 (``compact`` in ``generate``), since
    llama.cpp runs a separate forward pass for every run of consecutive ids; and a prefix common to
    all prompts of a call (the chat template's system prompt) is decoded once and copied.
    """

    name = "llamacpp"

    def __init__(self, gguf: Path, tokenizer: Any, info: BackendInfo, eos_ids: list[int], *,
                 parallel: int = 64, seq_ctx: int | None = None, n_threads: int | None = None,
                 flash_attn: bool | None = None, share_prefix: bool = True,
                 compact: bool = True):
        lc = _import_llama_cpp()
        self._lc = lc
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        self._model = lc.llama_model_load_from_file(str(gguf).encode(), mparams)
        if not self._model:
            raise TunelensError(f"llama.cpp cannot load {gguf}")
        self.gguf = gguf
        vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(vocab))
        self.train_ctx = int(lc.llama_model_n_ctx_train(self._model)) or 4096
        # llama.cpp holds at most LLAMA_MAX_SEQ (256) sequences; one is the shared prefix's.
        self.max_parallel = max(1, min(parallel, 255))
        self.threads = n_threads or _cpu_threads()
        self.flash_attn = flash_attn  # None: llama.cpp's choice (auto)
        # Both on by default; off only to measure what they buy (benchmarks/llamacpp_batching.py).
        self.share_prefix, self.compact = share_prefix, compact
        self._ctx = None
        self._batch = None
        self.parallel = self.seq_ctx = 0
        eos = set(eos_ids)
        eos.add(int(lc.llama_vocab_eos(vocab)))
        # Prompts may use the model's whole training context; the KV cache is sized per call.
        super().__init__(tokenizer, info, seq_ctx or self.train_ctx, sorted(eos))

    def _ensure_ctx(self, parallel: int, seq_ctx: int) -> None:
        """A context for ``parallel`` sequences of up to ``seq_ctx`` tokens each (re-made only when
        too small): the KV cache is ``(parallel + 1) * seq_ctx`` tokens, so it is sized to the call.
        The extra sequence (id ``parallel``) holds the prompts' shared prefix (see ``generate``)."""
        lc = self._lc
        if self._ctx is not None and parallel <= self.parallel and seq_ctx <= self.seq_ctx:
            return
        self._free_ctx()
        seq_ctx = min(self.train_ctx, -(-seq_ctx // 256) * 256)
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = seq_ctx * (parallel + 1)
        cparams.n_batch = max(512, parallel)
        cparams.n_ubatch = cparams.n_batch
        cparams.n_seq_max = parallel + 1
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.kv_unified = False  # each sequence its own slice of the cache (no cross-talk)
        if self.flash_attn is not None:
            cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise TunelensError(f"llama.cpp cannot create a context for {self.gguf} ({parallel} x {seq_ctx} tokens)")
        self._batch = lc.llama_batch_init(cparams.n_batch, 0, 1)
        self._batch_cap = int(cparams.n_batch)
        self.parallel, self.seq_ctx = parallel, seq_ctx

    def _free_ctx(self) -> None:
        lc = self._lc
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lc.llama_free(self._ctx)
            self._ctx = None

    # Shortest prompt prefix worth sharing. A shared prefix is decoded once into its own sequence
    # and its KV stream copied into each new sequence (llama.cpp copies whole streams across
    # sequences: seq_ctx positions, ~23 KB each for SmolLM2-135M in f16, so ~12 MB at 512), which
    # costs far less than decoding 16 tokens (~17 ms at ~950 prompt tok/s on 2 cores).
    MIN_SHARED_PREFIX = 16

    def _shared_prefix(self, prompts: list[list[int]]) -> list[int]:
        """The token prefix common to all ``prompts`` (at least 2), when it is worth sharing: e.g.
        the chat template's default system prompt, 24 of the 74 tokens of an average IFEval prompt
        for SmolLM2. The last token of every prompt is left to decode (its logits are needed)."""
        if not self.share_prefix or len(prompts) < 2:
            return []
        prefix = os.path.commonprefix(prompts)[: min(map(len, prompts)) - 1]
        return list(prefix) if len(prefix) >= self.MIN_SHARED_PREFIX else []

    # -- one llama_decode over (token, pos, seq, wants logits) rows --------------------------------
    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> dict[int, int]:
        """Decode ``rows``; return {row index with logits wanted: its output index in the batch}."""
        lc, batch, out = self._lc, self._batch, {}
        for start in range(0, len(rows), self._batch_cap):
            chunk = rows[start:start + self._batch_cap]
            batch.n_tokens = len(chunk)
            for j, (tok, pos, seq, logits) in enumerate(chunk):
                batch.token[j] = tok
                batch.pos[j] = pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = 1 if logits else 0
            rc = lc.llama_decode(self._ctx, batch)
            if rc != 0:
                raise TunelensError(f"llama.cpp decode failed (code {rc}) on a batch of {len(chunk)} tokens")
            # Logits of a chunk are only valid until the next decode: read them now.
            for j, (_, _, _, logits) in enumerate(chunk):
                if logits:
                    out[start + j] = self._pick_row(j)
        return out

    def _pick_row(self, j: int) -> Any:
        import numpy as np

        ptr = self._lc.llama_get_logits_ith(self._ctx, j)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    @staticmethod
    def _sample(logits: Any, params: GenerationParams, rng: Any) -> int:
        import numpy as np

        if params.temperature <= 0:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / params.temperature
        z -= z.max()
        p = np.exp(z)
        p /= p.sum()
        if params.top_p < 1.0:
            order = np.argsort(-p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), params.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        return int(rng.choice(len(p), p=p))

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None,
                 progress: bool = False) -> list[GenerationResult]:
        import heapq

        import numpy as np

        params = params or GenerationParams()
        encoded = self.encode(prompts, params)
        results: list[GenerationResult | None] = [too_long_result(ids, msg) if msg else None for ids, msg in encoded]
        queue = [k for k, (_, msg) in enumerate(encoded) if msg is None]
        queue.reverse()  # pop() takes them in input order
        if not queue:
            return [r for r in results if r is not None]
        longest = max(len(encoded[k][0]) for k in queue)
        self._ensure_ctx(min(self.max_parallel, len(queue)), longest + params.max_new_tokens)
        lc = self._lc
        mem = lc.llama_get_memory(self._ctx)
        lc.llama_memory_clear(mem, True)
        free = list(range(self.parallel))  # a heap of free seq ids: the lowest is taken first
        prefix = self._shared_prefix([encoded[k][0] for k in queue])
        if prefix:
            self._decode([(t, i, self.parallel, False) for i, t in enumerate(prefix)])
        active: dict[int, dict[str, Any]] = {}  # seq id -> state; "todo": rows to decode next
        bar, task = _progress(progress, len(queue))

        def admit() -> None:
            while queue and free:
                k, seq = queue.pop(), heapq.heappop(free)
                ids = encoded[k][0]
                if prefix:  # the prefix's KV stream is copied (at the next decode), the rest decoded
                    lc.llama_memory_seq_cp(mem, self.parallel, seq, -1, -1)
                active[seq] = {"k": k, "new": [], "pos": len(ids), "start": time.perf_counter(),
                               "rng": np.random.default_rng(params.seed + k), "cached": bool(prefix),
                               "todo": [(t, i, i == len(ids) - 1) for i, t in enumerate(ids) if i >= len(prefix)]}

        def compact() -> None:
            """Keep the active sequences on the lowest seq ids, with no gaps.

            With one KV stream per sequence (``kv_unified=False``) llama.cpp splits a batch into
            micro-batches of *consecutive* seq ids only (``llama_batch_allocr::split_equal(...,
            sequential=true)``), and each micro-batch is a full forward pass over the weights. A
            finished sequence in the middle therefore splits every later step at its hole: measured on
            the 64-prompt eval workload, steps grew from 92 ms (64 sequences) to 250 ms (48), and
            decode ran at 290 instead of ~600 tok/s. So once no prompt is left to fill a hole,
            the highest sequence moves into it (a copy of its KV stream, ~12 MB for SmolLM2-135M
            at 512 positions, done by llama.cpp at the start of the next decode)."""
            while free and active:
                low, high = free[0], max(active)
                if low > high:
                    return
                heapq.heappop(free)
                state = active.pop(high)
                if state["cached"]:
                    lc.llama_memory_seq_cp(mem, high, low, -1, -1)
                    lc.llama_memory_seq_rm(mem, high, -1, -1)
                active[low] = state
                heapq.heappush(free, high)

        def finished(state: dict[str, Any]) -> bool:
            new = state["new"]
            return (new[-1] in self.eos_ids or len(new) >= params.max_new_tokens
                    or (bool(params.stop) and _stops_hit(self.tokenizer, new, params.stop)))

        try:
            admit()
            while active:
                # Rows in increasing seq id order, each sequence's in position order (see compact).
                rows = [(t, pos, seq, want) for seq in sorted(active) for t, pos, want in active[seq]["todo"]]
                logits = self._decode(rows)
                for state in active.values():
                    state["todo"], state["cached"] = [], True
                for idx, row_logits in logits.items():
                    seq = rows[idx][2]
                    state = active[seq]
                    tok = self._sample(row_logits, params, state["rng"])
                    state["new"].append(tok)
                    if finished(state):
                        k = state["k"]
                        results[k] = _result(self.tokenizer, len(encoded[k][0]), state["new"], self.eos_ids, params,
                                             time.perf_counter() - state["start"])
                        lc.llama_memory_seq_rm(mem, seq, -1, -1)
                        del active[seq]
                        heapq.heappush(free, seq)
                        if bar is not None:
                            bar.update(task, advance=1)
                    else:
                        state["todo"] = [(tok, state["pos"], True)]
                        state["pos"] += 1
                admit()
                if not queue and self.compact:
                    compact()
        finally:
            if bar is not None:
                bar.stop()
        return [r for r in results if r is not None]

    def free_generation_context(self) -> None:
        """Free the generation context's KV cache (sized to the last call); the model and the scoring context
        stay. The next ``generate`` makes a new one."""
        self._free_ctx()
        self.parallel = self.seq_ctx = 0

    # -- log-probabilities of continuations (the multiple-choice suites) ------------------------------------
    # Tokens and scored positions per llama_decode call of the scorer. The logits buffer holds every scored
    # position's full vocabulary (49k floats for SmolLM2, ~200 KB each), so SCORE_OUTPUTS bounds it (~200 MB).
    SCORE_TOKENS = 2048
    SCORE_OUTPUTS = 1024
    SCORE_SEQS = 64

    def _score_context(self, tokens: int) -> None:
        """A second context for scoring, of at least ``tokens`` (re-made only when too small): one KV cache
        shared by all sequences (``kv_unified``), so a prompt's tokens can belong to all of its continuations'
        sequences at once (a tree, as the packed torch engine lays out with a 4-D mask)."""
        lc = self._lc
        if getattr(self, "_sctx", None) is not None:
            if tokens <= self._score_cap:
                return
            lc.llama_batch_free(self._sbatch)
            lc.llama_free(self._sctx)
            self._sctx = self._sbatch = None
        tokens = min(self.train_ctx, -(-tokens // 256) * 256)
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = tokens
        cparams.n_batch = tokens
        cparams.n_ubatch = 512
        cparams.n_seq_max = self.SCORE_SEQS
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.kv_unified = True
        self._sctx = lc.llama_init_from_model(self._model, cparams)
        if not self._sctx:
            raise TunelensError(f"llama.cpp cannot create a scoring context for {self.gguf}")
        self._sbatch = lc.llama_batch_init(tokens, 0, self.SCORE_SEQS)
        self._score_cap = tokens

    def continuation_logprobs(self, encoded: Sequence[tuple[list[int], int]],
                              keep: Sequence[int]) -> dict[int, tuple[float, int]]:
        """(summed log-prob, tokens) of each kept ``(prompt + continuation ids, where the continuation
        starts)``, as ``tunelens.evaluate.logprob.continuation_logprobs`` computes them with torch.

        Each prompt is decoded once, its tokens shared by the sequences of all its continuations (one
        sequence each, positions continuing the prompt's), and several such trees go through one
        ``llama_decode``; logits are requested only where the next token is scored, and the log-softmax
        of the target is taken here in float64. A tree with more continuations than ``SCORE_SEQS`` or
        more tokens than ``SCORE_TOKENS`` is split (its prompt decoded again for each part); a prompt and one
        continuation longer than that get a call, and a context, of their own (up to the model's training
        context)."""
        import numpy as np

        trees: dict[tuple[int, ...], list[int]] = {}
        for i in keep:
            seq, begin = encoded[i]
            if begin < 1 or begin >= len(seq):
                raise TunelensError(f"pair {i}: a prompt and a continuation of at least one token each are needed")
            trees.setdefault(tuple(seq[:begin]), []).append(i)
        # parts: (prefix, [pair indices]) within the per-call limits (a call never exceeds the model's context)
        cap = min(self.SCORE_TOKENS, self.train_ctx)
        parts: list[tuple[list[int], list[int]]] = []
        for prefix, members in trees.items():
            p = len(prefix)
            part: list[int] = []
            size, outs = p, 1  # tokens decoded, positions scored
            for i in members:
                n = len(encoded[i][0]) - p
                if part and (len(part) >= self.SCORE_SEQS or size + n - 1 > cap
                             or outs + n - 1 > self.SCORE_OUTPUTS):
                    parts.append((list(prefix), part))
                    part, size, outs = [], p, 1
                part.append(i)
                size += n - 1
                outs += n - 1
            parts.append((list(prefix), part))
        longest = max((len(prefix) + sum(len(encoded[i][0]) - len(prefix) - 1 for i in members)
                       for prefix, members in parts), default=0)
        if longest > self.train_ctx:
            raise TunelensError(f"a prompt and its continuation need {longest} tokens, more than the model's context "
                                f"({self.train_ctx})")
        limit = max(cap, longest)  # <= train_ctx, which bounds the context below
        self._score_context(limit)
        lc, batch, ctx = self._lc, self._sbatch, self._sctx
        mem = lc.llama_get_memory(ctx)
        out: dict[int, tuple[float, int]] = {}

        def flush(call: list[tuple[list[int], list[int]]]) -> None:
            lc.llama_memory_clear(mem, True)
            n = 0
            wanted: list[tuple[int, list[tuple[int, int]]]] = []  # (batch row, [(pair, target token)])
            seq_base = 0
            for prefix, members in call:
                p = len(prefix)
                seqs = list(range(seq_base, seq_base + len(members)))
                seq_base += len(members)
                for pos, tok in enumerate(prefix):
                    batch.token[n], batch.pos[n] = tok, pos
                    batch.n_seq_id[n] = len(seqs)
                    for k, s in enumerate(seqs):
                        batch.seq_id[n][k] = s
                    batch.logits[n] = 1 if pos == p - 1 else 0
                    n += 1
                wanted.append((n - 1, [(i, encoded[i][0][p]) for i in members]))
                for s, i in zip(seqs, members):
                    cont = encoded[i][0][p:]
                    for t in range(len(cont) - 1):  # the logits at token t predict token t + 1
                        batch.token[n], batch.pos[n] = cont[t], p + t
                        batch.n_seq_id[n] = 1
                        batch.seq_id[n][0] = s
                        batch.logits[n] = 1
                        wanted.append((n, [(i, cont[t + 1])]))
                        n += 1
            batch.n_tokens = n
            rc = lc.llama_decode(ctx, batch)
            if rc != 0:
                raise TunelensError(f"llama.cpp decode failed (code {rc}) scoring a batch of {n} tokens")
            for row, targets in wanted:
                x = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, row), shape=(self.n_vocab,))
                m = float(x.max())
                norm = m + float(np.log(np.exp((x - m).astype(np.float64)).sum()))
                for i, target in targets:
                    lp, cnt = out.get(i, (0.0, 0))
                    out[i] = (lp + float(x[target]) - norm, cnt + 1)

        call: list[tuple[list[int], list[int]]] = []
        tokens = outs = seqs = 0
        for prefix, members in parts:
            scored = 1 + sum(len(encoded[i][0]) - len(prefix) - 1 for i in members)
            size = len(prefix) + scored - 1
            if call and (tokens + size > limit or outs + scored > self.SCORE_OUTPUTS
                         or seqs + len(members) > self.SCORE_SEQS):
                flush(call)
                call, tokens, outs, seqs = [], 0, 0, 0
            call.append((prefix, members))
            tokens += size
            outs += scored
            seqs += len(members)
        if call:
            flush(call)
        return out

    def close(self) -> None:
        lc = self._lc
        if getattr(self, "_ctx", None) is not None or getattr(self, "_batch", None) is not None:
            self._free_ctx()
        if getattr(self, "_sbatch", None) is not None:
            lc.llama_batch_free(self._sbatch)
            self._sbatch = None
        if getattr(self, "_sctx", None) is not None:
            lc.llama_free(self._sctx)
            self._sctx = None
        if getattr(self, "_model", None):
            lc.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


class VLLMBackend(Backend):
    """vLLM on CUDA: the whole prompt list in one call (continuous batching inside vLLM)."""

    name = "vllm"

    def __init__(self, model_dir: Path, tokenizer: Any, info: BackendInfo, eos_ids: list[int], **llm_kwargs: Any):
        from vllm import LLM  # noqa: PLC0415 - optional, GPU machines only

        self.llm = LLM(model=str(model_dir), tokenizer=str(model_dir), seed=0, **llm_kwargs)
        config = self.llm.llm_engine.model_config
        # vLLM runs an fp32 checkpoint in bf16/fp16 unless told otherwise: record what it really uses.
        info = replace(info, quant=str(config.dtype).removeprefix("torch."))
        super().__init__(tokenizer, info, int(config.max_model_len), eos_ids)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None,
                 progress: bool = False) -> list[GenerationResult]:
        from vllm import SamplingParams  # noqa: PLC0415
        from vllm.inputs import TokensPrompt  # noqa: PLC0415

        params = params or GenerationParams()
        encoded = self.encode(prompts, params)
        runnable = [k for k, (_, msg) in enumerate(encoded) if msg is None]
        sampling = SamplingParams(
            max_tokens=params.max_new_tokens, temperature=params.temperature,
            top_p=params.top_p if params.temperature > 0 else 1.0, seed=params.seed,
            stop=[s for s in params.stop if s] or None, stop_token_ids=self.eos_ids,
            include_stop_str_in_output=True, skip_special_tokens=False,
        )
        start = time.perf_counter()
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=encoded[k][0]) for k in runnable], sampling,
                                 use_tqdm=progress)
        elapsed = time.perf_counter() - start
        results = [too_long_result(ids, msg) for ids, msg in encoded]
        for k, out in zip(runnable, outs):
            new_ids = list(out.outputs[0].token_ids)
            results[k] = _result(self.tokenizer, len(encoded[k][0]), new_ids, self.eos_ids, params, elapsed)
        return results


# -- choosing and loading -------------------------------------------------------------------------
def llama_cpp_available() -> bool:
    """llama-cpp-python is installed and built for instructions this CPU has (``tunelens.generate.cpu``)."""
    from tunelens.generate.cpu import llama_cpp_status

    return llama_cpp_status().usable


def _require_llama_cpp() -> None:
    """Raise, with the reason, unless llama.cpp can be loaded here: importing a build for another
    CPU kind would kill this process with SIGILL (the check runs in a child process)."""
    from tunelens.generate.cpu import llama_cpp_status

    status = llama_cpp_status()
    if not status.usable:
        raise ConfigError(f"backend 'llamacpp': {status.reason}; or `pip install llama-cpp-python` (it compiles "
                          "llama.cpp: cmake and a C++ compiler); or use --backend hf")


def resolve_quant(quant: str) -> tuple[str, str | None]:
    """The GGUF type ``quant`` means here, and a note when it was ``auto``.

    ``auto`` is f16 where llama.cpp was built with AVX-512, else q8_0. Measured on the 2-core AMD EPYC
    (Zen 5) host, eval workload, 64 parallel sequences (docs/benchmarks.md, 2026-12-06, third
    session): with the AVX-512 build f16 decodes 1.28x faster than q8_0 (277.5 vs 216.3 tok/s) and gives
    hf's greedy text; with the AVX2 build q8_0 was as fast (Zen 5: 196 vs 195 tok/s) or faster (Intel
    Xeon: 87 vs 67 tok/s). At batch 1 (serving) q8_0 is faster everywhere (5.2 vs 6.3 ms/token on Zen 5):
    serve keeps q8_0 as its default. On AMD Zen 4 (AVX-512 on 256-bit units; 2026-12-07) the avx512 build's
    f16 and q8_0 decode batches at about the same speed (f16 4-7% slower in the medians), so f16 stays: it
    costs little there and its greedy text is the closest to hf's."""
    if quant not in QUANT_CHOICES:
        raise ConfigError(f"quant must be one of {', '.join(QUANT_CHOICES)}, got {quant!r}")
    if quant != "auto":
        return quant, None
    from tunelens.generate.cpu import llama_cpp_status

    if llama_cpp_status().has_avx512:
        return "f16", ("quant auto: f16 (llama.cpp built with AVX-512: f16 is closest to hf's greedy text and "
                       "decodes batches about as fast as q8_0 (Zen 4) or faster (Zen 5))")
    return "q8_0", "quant auto: q8_0 (llama.cpp built without AVX-512: q8_0 decodes at least as fast as f16)"


def vllm_available() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


_QUIET_LOG = None  # the no-op log callback handed to llama.cpp (kept alive here)


def _import_llama_cpp():
    global _QUIET_LOG
    _require_llama_cpp()
    import llama_cpp

    if _QUIET_LOG is None and log.getEffectiveLevel() > logging.DEBUG:
        # llama.cpp logs every load and context to stderr; tunelens shows its own progress instead.
        _QUIET_LOG = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_QUIET_LOG, None)
    return llama_cpp


def _cpu_threads() -> int:
    """llama.cpp's threads: as many as torch uses (``torch.get_num_threads()``: the physical cores,
    ``OMP_NUM_THREADS``, serve's ``torch_threads``), so both backends run under the same setting.

    One knob matters on a shared machine: llama.cpp's OpenMP threads meet at a barrier after every
    op, and with more threads than free cores each barrier waits for a descheduled thread. Measured
    on this 2-core host at load average 10-14: q8_0 decode 9.4 tok/s with 1 thread, 0.8-1.8 tok/s
    with 2 (torch fp32 alike: 10.9 vs 1.7), so ``OMP_NUM_THREADS=1`` there (docs/benchmarks.md)."""
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except Exception:  # pragma: no cover - torch is a dependency; the CPUs otherwise
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:
            return max(1, os.cpu_count() or 1)


def choose_backend(name: str) -> tuple[str, str | None]:
    """The backend ``name`` means on this machine, and a note when ``auto`` had to choose."""
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name != "auto":
        if name == "vllm" and not vllm_available():
            raise ConfigError("backend 'vllm' needs the vllm package and a CUDA GPU; use --backend hf or llamacpp")
        return name, None
    if vllm_available():
        return "vllm", "auto: vllm (CUDA and vllm available)"
    from tunelens.generate.cpu import llama_cpp_status

    status = llama_cpp_status()
    if status.usable:
        return "llamacpp", "auto: llamacpp (llama-cpp-python available)"
    return "hf", f"auto: hf ({status.reason})"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_backend(spec: str, name: str = "auto", *, quant: str = DEFAULT_GGUF_QUANT, progress: bool = True,
                 say: Callable[[str], None] | None = None, loaded: Any = None,
                 vllm_options: dict[str, Any] | None = None) -> Backend:
    """Load ``spec`` (any model spec ``tunelens.models`` resolves) behind backend ``name``.

    ``loaded``: an already loaded ``tunelens.models.LoadedModel`` of ``spec`` to reuse (hf only).
    ``say`` receives one line on what was chosen (auto's fallback included).
    ``vllm_options``: keyword arguments for ``vllm.LLM`` (e.g. ``dtype``, ``gpu_memory_utilization``,
    ``enforce_eager``); vLLM's defaults otherwise. The dtype it runs is recorded as the quant.
    """
    from tunelens.generate.engine import _eos_ids
    from tunelens.models import load_model

    chosen, note = choose_backend(name)
    if note and say:
        say(note)
    if quant not in QUANT_CHOICES:
        raise ConfigError(f"quant must be one of {', '.join(QUANT_CHOICES)}, got {quant!r}")

    if chosen == "hf":
        lm = loaded if loaded is not None else load_model(spec, merge_adapter=True)
        return HFBackend(merged_model(lm.model), lm.tokenizer, BackendInfo("hf", spec, quant="fp32", note=note))

    tokenizer = _tokenizer_for(spec)
    eos_ids = _eos_ids(_ConfigOnly(spec), tokenizer)
    if chosen == "llamacpp":
        _require_llama_cpp()
        quant, quant_note = resolve_quant(quant)
        if quant_note and say:
            say(quant_note)
        note = "; ".join(n for n in (note, quant_note) if n) or None
        gguf, used_quant = gguf_for(spec, quant, progress=progress, say=say)
        from tunelens.generate.cpu import llama_cpp_status

        info = BackendInfo("llamacpp", spec, quant=used_quant, gguf=str(gguf), gguf_sha256=file_sha256(gguf), note=note,
                           build=llama_cpp_status().build)
        return LlamaCppBackend(gguf, tokenizer, info, eos_ids)
    # vllm serves a plain HF checkpoint: an adapter is merged into one first.
    path = _resolved(spec)
    model_dir = merged_dir_for(spec) if _adapter_base(path) is not None else path
    return VLLMBackend(model_dir, tokenizer, BackendInfo("vllm", spec, note=note), eos_ids, **(vllm_options or {}))


def _resolved(spec: str) -> Path:
    from tunelens.models import resolve_model

    return Path(resolve_model(spec, progress=False)[0])


class _ConfigOnly:
    """Stands in for a model where only ``generation_config.eos_token_id`` is read."""

    def __init__(self, spec: str):
        from transformers import GenerationConfig

        path = _resolved(spec)
        base = _adapter_base(path) or path
        try:
            self.generation_config = GenerationConfig.from_pretrained(str(base))
        except Exception:  # no generation_config.json: the tokenizer's EOS is used
            self.generation_config = None


def _adapter_base(path: Path) -> Path | None:
    """The base model's directory of a PEFT adapter directory, else None."""
    from tunelens.models.loading import _adapter_base as base_of

    base = base_of(path) if path.is_dir() else None
    return _resolved(base) if base else None


def _tokenizer_for(spec: str) -> Any:
    from tunelens.models import load_tokenizer

    return load_tokenizer(spec)


def merged_model(model: Any) -> Any:
    """A PEFT model merged into its base (no unmerged LoRA matmuls); any other model as it is."""
    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        return model.merge_and_unload()
    return model


def _model_digest(spec: str) -> str:
    """A digest of the resolved model's files (an adapter's and its base's)."""
    from tunelens.models.loading import model_fingerprint

    path = _resolved(spec)
    base = _adapter_base(path)
    return model_fingerprint(path) + (model_fingerprint(base) if base else "")


def gguf_for(spec: str, quant: str, *, progress: bool = True, say: Callable[[str], None] | None = None) -> tuple[Path, str]:
    """A GGUF of ``spec`` at ``quant``: the file itself when ``spec`` is a .gguf, else exported once
    into the cache (keyed by the model's content digest and the quant) with ``tunelens.export``."""
    from tunelens.models.store import build_atomically, cache_dir

    if str(spec).endswith(".gguf") and Path(spec).is_file():
        return Path(spec), _gguf_type(Path(spec))
    from tunelens.export import export_gguf

    target = cache_dir() / "gguf" / f"{_model_digest(spec)}-{quant}"
    out = target / "model.gguf"
    if not out.is_file():
        if say:
            say(f"exporting {spec} to GGUF {quant} once -> {out}")

        def build(tmp: Path) -> None:
            export_gguf(spec, tmp / "model.gguf", quant=quant, modelfile=False)

        build_atomically(target, build, force=False, what=f"the {quant} GGUF of {spec}",
                         is_complete=lambda p: (p / "model.gguf").is_file(), progress=progress)
    _bound_cache(target, say)
    return out, quant


def _bound_cache(entry: Path, say: Callable[[str], None] | None) -> None:
    """Mark ``entry`` used and evict the least recently used others of its cache folder beyond
    ``$TUNELENS_DERIVED_CACHE_GB`` (``tunelens.models.store.evict_lru``)."""
    from tunelens.models.store import derived_cache_budget, evict_lru, mark_used

    mark_used(entry)
    removed = evict_lru(entry.parent, derived_cache_budget(), keep=entry)
    if removed and say:
        say(f"removed {len(removed)} least recently used entries ({sum(b for _, b in removed) / 1e9:.2f} GB) from "
            f"{entry.parent} to keep it within TUNELENS_DERIVED_CACHE_GB")


def merged_dir_for(spec: str) -> Path:
    """A merged HF checkpoint of an adapter spec, written once into the cache (for vllm)."""
    from tunelens.models import load_model
    from tunelens.models.store import build_atomically, cache_dir

    target = cache_dir() / "merged" / _model_digest(spec)

    def build(tmp: Path) -> None:
        lm = load_model(spec)
        merged_model(lm.model).save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)

    out = build_atomically(target, build, force=False, what=f"the merged checkpoint of {spec}",
                           is_complete=lambda p: (p / "config.json").is_file())
    _bound_cache(out, None)
    return out


def _gguf_type(path: Path) -> str:
    """The file type a GGUF declares (general.file_type), as a quant name."""
    try:
        from gguf import GGUFReader, LlamaFileType

        field = GGUFReader(str(path)).fields.get("general.file_type")
        if field is None:
            return "unknown"
        value = int(field.parts[field.data[0]][0])
        return LlamaFileType(value).name.removeprefix("MOSTLY_").lower()
    except Exception:  # pragma: no cover - an odd file still generates; it is only a label
        return "unknown"
