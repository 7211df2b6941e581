"""The vLLM backend on a CUDA machine: same GenerationParams in, same GenerationResult out as hf.

These run only where vLLM and a CUDA GPU are present (never in CPU CI); the GPU machine lent to a
session runs them with ``VLLM_ENABLE_V1_MULTIPROCESSING=0 pytest tests/test_vllm_backend.py``.

vLLM's kernels are not transformers' kernels, so greedy text can part from hf's where two tokens
nearly tie. The check is the one that matters: wherever vLLM's greedy choice differs from hf fp32,
hf itself scores the two tokens within a small fraction of its logit range (a near-tie), and
every token vLLM chose before that is hf's own greedy choice.
"""

from __future__ import annotations

import pytest

from tunelens.generate import GenerationParams
from tunelens.generate.backends import choose_backend, vllm_available

pytestmark = pytest.mark.skipif(not vllm_available(), reason="needs the vllm package and a CUDA GPU")

PROMPTS = [[{"role": "user", "content": q}] for q in (
    "Name three colours.", "What is 2+3?", "hi", "Write a haiku about rain.",
    "Translate 'good morning' into French.", "List two prime numbers.")]
# Two vLLM engines live in one test process: each takes a quarter of the GPU, no CUDA graphs.
VLLM_OPTIONS = {"dtype": "float32", "gpu_memory_utilization": 0.25, "enforce_eager": True}
NEAR_TIE = 0.02  # of hf's logit range at that step: fp32 on another kernel set, far below a real preference


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_path):
    """A small random Llama with head_dim 64 (attention kernels' usual size) and SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tiny_model_path))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits than the default init, so most steps have a clear winner
        model.lm_head.weight.mul_(40.0)
    out = tmp_path_factory.mktemp("vllm") / "model"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def _greedy_ids_vllm(backend, prompts, max_new):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    encoded = backend.encode(prompts, GenerationParams(max_new_tokens=max_new))
    outs = backend.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids, _ in encoded],
                                SamplingParams(max_tokens=max_new, temperature=0.0, ignore_eos=True), use_tqdm=False)
    return [ids for ids, _ in encoded], [list(o.outputs[0].token_ids) for o in outs]


def _check_against_hf(hf_model, prompt_ids, vllm_ids):
    """vLLM's greedy tokens are hf fp32's greedy tokens up to the first near-tie."""
    import torch

    agreed = parted = 0
    for ids, new in zip(prompt_ids, vllm_ids):
        seq = list(ids)
        for tok in new:
            with torch.no_grad():
                logits = hf_model(input_ids=torch.tensor([seq])).logits[0, -1].float()
            best = int(logits.argmax())
            if best != tok:
                gap = float(logits[best] - logits[tok])
                scale = float(logits.max() - logits.min())
                assert gap <= NEAR_TIE * scale, (
                    f"vLLM chose token {tok} where hf prefers {best} by {gap:.4f} (logit range {scale:.2f}): "
                    "not a near-tie")
                parted += 1
                break
            agreed += 1
            seq.append(tok)
    return agreed, parted


def test_auto_chooses_vllm_on_a_cuda_machine_that_has_it():
    assert choose_backend("auto") == ("vllm", "auto: vllm (CUDA and vllm available)")


def test_vllm_backend_matches_hf_and_gives_the_same_result_shape(model_dir):
    from transformers import AutoModelForCausalLM

    from tunelens.generate.backends import load_backend

    vllm = load_backend(str(model_dir), "vllm", vllm_options=VLLM_OPTIONS)
    hf = load_backend(str(model_dir), "hf")
    assert vllm.info.backend == "vllm" and vllm.info.quant == "float32"
    assert vllm.info.cache_key() != hf.info.cache_key()  # never mixed in the generation cache

    params = GenerationParams(max_new_tokens=12)
    got, ref = vllm.generate(PROMPTS, params), hf.generate(PROMPTS, params)
    assert [r.prompt_tokens for r in got] == [r.prompt_tokens for r in ref]
    for r in got:
        assert r.error is None and r.finish_reason in ("stop", "length")
        assert 1 <= r.completion_tokens <= 12
        assert (r.finish_reason == "length") == (r.completion_tokens == 12)

    prompt_ids, new_ids = _greedy_ids_vllm(vllm, PROMPTS, 16)
    agreed, parted = _check_against_hf(AutoModelForCausalLM.from_pretrained(str(model_dir)).eval(), prompt_ids, new_ids)
    assert agreed >= len(PROMPTS) * 16 // 2, f"vLLM agreed with hf on only {agreed} tokens before a near-tie"
    print(f"vllm vs hf fp32: {agreed} greedy tokens agreed; {parted} prompts parted at a near-tie")

    # a stop string taken from vLLM's own answer ends that answer there (finish "stop"), and is cut from the text
    full = got[0].text
    stop_at = next(full[k:k + 3] for k in range(2, max(3, len(full) - 2)) if full[k:k + 3].strip())
    a = vllm.generate(PROMPTS[:1], GenerationParams(max_new_tokens=12, stop=[stop_at]))[0]
    assert a.finish_reason == "stop" and stop_at not in a.text, (stop_at, a)
    assert full.startswith(a.text), (full, a.text)


def test_vllm_backend_serves_an_adapter_merged(tmp_path, model_dir):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelens.generate.backends import load_backend

    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(model_dir)),
                                LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                                           init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    backend = load_backend(str(tmp_path / "adapter"), "vllm", vllm_options=VLLM_OPTIONS)
    assert backend.info.backend == "vllm" and backend.info.model == str(tmp_path / "adapter")
    prompt_ids, new_ids = _greedy_ids_vllm(backend, PROMPTS, 12)
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(model_dir)), str(tmp_path / "adapter")).eval()
    agreed, _ = _check_against_hf(ref, prompt_ids, new_ids)
    assert agreed >= len(PROMPTS) * 12 // 2
    # the check bites: along vLLM's tokens the base model would have chosen otherwise somewhere
    base = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        differs = sum(
            int((base(input_ids=torch.tensor([ids + new])).logits[0, len(ids) - 1:-1].argmax(-1)
                 != torch.tensor(new)).sum())
            for ids, new in zip(prompt_ids, new_ids))
    assert differs > 0, "the adapter did not change the base model's greedy choices: the test cannot tell them apart"
