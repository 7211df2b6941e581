"""Generation backends: the same GenerationParams in and GenerationResult out, whichever runs."""

from __future__ import annotations

import pytest

from _llama import requires_usable_llama_cpp, skip_without_usable_llama_cpp

from tunelens.errors import ConfigError
from tunelens.generate import GenerationParams, generate
from tunelens.generate.backends import BackendInfo, choose_backend, load_backend

PROMPTS = [[{"role": "user", "content": q}] for q in ("Name three colours.", "What is 2+3?", "hi")]


def test_unknown_backend_and_quant_are_config_errors():
    with pytest.raises(ConfigError, match="backend must be one of hf, llamacpp, vllm, auto"):
        choose_backend("onnx")
    with pytest.raises(ConfigError, match="quant must be one of"):
        load_backend("tiny-random", "hf", quant="q3")


def test_auto_says_what_it_chose(monkeypatch):
    import tunelens.generate.backends as b

    import tunelens.generate.cpu as cpu

    monkeypatch.setattr(b, "vllm_available", lambda: False)
    monkeypatch.setattr(cpu, "find_spec", lambda name: None)  # as if llama-cpp-python were not installed
    cpu.llama_cpp_status.cache_clear()
    try:
        assert choose_backend("auto") == ("hf", "auto: hf (llama-cpp-python is not installed; `make llamacpp` "
                                                "(part of `make demo` and `make test`) builds it when it can)")
        with pytest.raises(ConfigError, match="llama-cpp-python is not installed"):
            load_backend("tiny-random", "llamacpp")
    finally:
        cpu.llama_cpp_status.cache_clear()
    monkeypatch.setattr(cpu, "llama_cpp_status", lambda: cpu.LlamaCppStatus(True, "built with AVX2"))
    assert choose_backend("auto")[0] == "llamacpp"
    with pytest.raises(ConfigError, match="vllm package and a CUDA GPU"):
        choose_backend("vllm")


def test_hf_backend_is_the_engine(tiny_model_path):
    from tunelens.models import load_model

    lm = load_model(str(tiny_model_path))
    params = GenerationParams(max_new_tokens=6)
    backend = load_backend(str(tiny_model_path), "hf")
    assert backend.info == BackendInfo("hf", str(tiny_model_path), quant="fp32")
    assert backend.info.cache_key() == {"backend": "hf", "quant": "fp32", "gguf_sha256": None}
    got = backend.generate(PROMPTS, params)
    ref = generate(lm.model, lm.tokenizer, PROMPTS, params)
    assert [(r.text, r.completion_tokens, r.finish_reason) for r in got] == \
        [(r.text, r.completion_tokens, r.finish_reason) for r in ref]


def test_hf_backend_merges_an_adapter(tmp_path, tiny_model_path):
    """Generation through an adapter runs on the merged weights (no unmerged LoRA matmuls)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_path))
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    backend = load_backend(str(tmp_path / "adapter"), "hf")
    assert not hasattr(backend.model, "peft_config")
    assert not any("lora" in n for n, _ in backend.model.named_parameters())
    ref = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_path)),
                         LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ref.load_state_dict(peft_model.state_dict())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        a, m = ref(input_ids=ids).logits, backend.model(input_ids=ids).logits
    from _numerics import assert_close_relative

    assert_close_relative(m, a, rel=1e-4, what="merged vs adapter logits")  # merge = one rounding per weight


@requires_usable_llama_cpp()
def test_llamacpp_backend_gives_the_same_result_shape_and_greedy_text_as_hf_at_f32(tiny_model_path):
    """At f32 the GGUF holds the same weights: greedy text, token counts and finish reasons match hf."""
    params = GenerationParams(max_new_tokens=8)
    hf = load_backend(str(tiny_model_path), "hf").generate(PROMPTS, params)
    cpp = load_backend(str(tiny_model_path), "llamacpp", quant="f32")
    assert cpp.info.backend == "llamacpp" and cpp.info.quant == "f32" and len(cpp.info.gguf_sha256) == 64
    got = cpp.generate(PROMPTS, params)
    assert [(r.prompt_tokens, r.completion_tokens, r.finish_reason) for r in got] == \
        [(r.prompt_tokens, r.completion_tokens, r.finish_reason) for r in hf]
    assert [r.text for r in got] == [r.text for r in hf]
    # stop strings and max_new_tokens are honoured the same way
    stopped = cpp.generate(PROMPTS[:1], GenerationParams(max_new_tokens=8, stop=["\n"]))
    assert stopped[0].finish_reason in ("stop", "eos") and "\n" not in stopped[0].text


def _eval(tmp_path, tiny_model_path, name, backend, quant="q8_0"):
    from tunelens.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(models=[{"spec": str(tiny_model_path), "label": "m"}], suites=["ifeval"], limit=3, output_dir=tmp_path / name,
                     cache_dir=tmp_path / "cache", generation={"max_new_tokens": 4, "backend": backend, "quant": quant})
    return evaluate(cfg, progress=False)


def test_eval_records_the_backend_and_keys_its_cache_on_it(tmp_path, tiny_model_path):
    res = _eval(tmp_path, tiny_model_path, "hf", "hf")
    assert res["models"]["m"]["generation_backend"]["backend"] == "hf"
    assert len(list((tmp_path / "cache").glob("*.jsonl"))) == 1
    skip_without_usable_llama_cpp()  # the llamacpp half
    res = _eval(tmp_path, tiny_model_path, "cpp", "llamacpp", "f16")
    info = res["models"]["m"]["generation_backend"]
    assert (info["backend"], info["quant"], len(info["gguf_sha256"])) == ("llamacpp", "f16", 64)
    # a second cache file: llama.cpp's answers are never read back as transformers' (or vice versa)
    assert len(list((tmp_path / "cache").glob("*.jsonl"))) == 2
    assert res["cost"]["m"]["cached_generations"] == 0


def _eos_sampler(eos: int, p_stop: float):
    """Greedy, but each step ends the sequence with probability ``p_stop`` from its own seeded rng, so
    sequences finish at different steps, the same ones whatever the batching."""
    import numpy as np

    def sample(logits, params, rng):
        return eos if rng.random() < p_stop else int(np.argmax(logits))
    return sample


@requires_usable_llama_cpp()
def test_llamacpp_keeps_sequences_on_consecutive_ids_and_moves_their_cache_correctly(tiny_model_path, monkeypatch):
    """llama.cpp splits a batch at every gap in the seq ids (one forward pass per run of
    consecutive ids), so when sequences finish the highest moves into the hole, its KV cache with
    it. Each answer must be what the same prompt gets with no moves at all (one at a time)."""
    import llama_cpp

    prompts = [[{"role": "user", "content": f"Count to {n} and name {n} animals."}] for n in range(10)]
    params = GenerationParams(max_new_tokens=12)
    cpp = load_backend(str(tiny_model_path), "llamacpp", quant="f32")
    eos = cpp.eos_ids[0]
    monkeypatch.setattr(cpp, "_sample", _eos_sampler(eos, 0.2))
    cpp.max_parallel = 1
    alone = cpp.generate(prompts, params)
    assert len({r.completion_tokens for r in alone}) > 2  # they do finish at different steps

    cpp.max_parallel = 10
    calls, copies = [], []
    decode, seq_cp = cpp._decode, llama_cpp.llama_memory_seq_cp
    monkeypatch.setattr(cpp, "_decode", lambda rows: calls.append([r[2] for r in rows]) or decode(rows))
    monkeypatch.setattr(llama_cpp, "llama_memory_seq_cp",
                        lambda mem, src, dst, p0, p1: copies.append((src, dst)) or seq_cp(mem, src, dst, p0, p1))
    together = cpp.generate(prompts, params)
    assert [(r.text, r.completion_tokens, r.finish_reason) for r in together] == \
        [(r.text, r.completion_tokens, r.finish_reason) for r in alone]
    prefix_seq = cpp.parallel
    moves = [(src, dst) for src, dst in copies if src != prefix_seq]
    assert moves and all(src > dst for src, dst in moves)
    for seqs in calls:
        if seqs == [prefix_seq] * len(seqs):  # the shared prefix, decoded once
            continue
        assert seqs == sorted(seqs)  # rows in seq order ...
        assert sorted(set(seqs)) == list(range(len(set(seqs))))  # ... on 0..n-1, no gaps


@requires_usable_llama_cpp()
def test_llamacpp_decodes_a_shared_prompt_prefix_once(tiny_model_path, monkeypatch):
    """The chat template's system prompt, common to every prompt, is decoded once and its cache
    copied: fewer tokens decoded, the same answers."""
    from tunelens.generate.engine import encode_prompts

    prompts = [[{"role": "user", "content": f"Describe the number {n}."}] for n in range(6)]
    params = GenerationParams(max_new_tokens=6)
    cpp = load_backend(str(tiny_model_path), "llamacpp", quant="f32")
    ids = [x for x, _ in encode_prompts(cpp.tokenizer, prompts, params, cpp.context)]
    shared = cpp._shared_prefix(ids)
    assert len(shared) >= cpp.MIN_SHARED_PREFIX and all(x[:len(shared)] == shared for x in ids)
    assert cpp._shared_prefix(ids[:1]) == [] and cpp._shared_prefix([ids[0], ids[0][:3] + [1, 2, 3]]) == []

    decoded = {}
    decode = cpp._decode
    for share in (False, True):
        cpp.share_prefix = share
        rows = []
        monkeypatch.setattr(cpp, "_decode", lambda r: rows.extend(r) or decode(r))
        out = cpp.generate(prompts, params)
        decoded[share] = (len(rows), [(r.text, r.prompt_tokens, r.completion_tokens) for r in out])
    assert decoded[False][0] - decoded[True][0] == (len(prompts) - 1) * len(shared)
    assert decoded[True][1] == decoded[False][1]
