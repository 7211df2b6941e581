"""GGUF export round-trips: the file loads back in transformers (``gguf_file=``) with the merged
model's logits, the same tokenizer and the same chat template, for the tiny model, a LoRA adapter
on it (merged), and tiny Mistral / Qwen2 models; a wrong export (unmerged, q/k not permuted) fails.

Bounds (relative to the reference logits' size, ``assert_close_relative``; measured over four
prompts on the tiny Llama, the merged adapter, tiny Mistral and tiny Qwen2, 1 thread, AVX-512):
  f32   0 (bit-identical)                          -> bound 1e-6 (fp32 rounding only)
  f16   <= 5.4e-4 (norm), 6.9e-4 (max entry)       -> bound 2e-3
  q8_0  <= 1.2e-2 (norm), 2.4e-2 (max entry)       -> bound 5e-2
Against a reference whose weights were rounded the same way first (f16, or Q8_0 through
gguf-py's quantize/dequantize), every type matches bit for bit (measured 0), bound 1e-6: this is
the check that tells layout errors from quantisation error. A q/k permutation left out changes
the tiny model's logits by only 7.6e-3 (its random attention is nearly uniform), below the q8_0
bound, which is why the f32 and rounded-reference checks carry the layout test.

Not marked ``numeric`` (a pass takes about two minutes): the exact checks compare two runs of the
same kernels in one process, and the quantisation bounds keep a 2x margin over kernel rounding.
When written, this file passed under each of the Makefile's NUMERIC_ENVS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _llama import skip_without_usable_llama_cpp
from _numerics import assert_close_relative

pytestmark = [pytest.mark.usefixtures("one_torch_thread")]

BOUND = {"f32": 1e-6, "f16": 2e-3, "q8_0": 5e-2}
EXACT = 1e-6
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a haiku about GGUF files and llamas.",
    "def f(x):\n    return x * 2  # 12345",
    "Привет, мир! 你好 🦙",
]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
]


def _logits(model, tokenizer) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            out.append(model(input_ids=ids).logits[0].double())
    return torch.cat(out)


def _load_back(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)


def _rounded(model, quant: str):
    """A copy of ``model`` with every matrix rounded the way the export stores it."""
    import copy

    import gguf

    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    out = copy.deepcopy(model)
    with torch.no_grad():
        for _, p in out.named_parameters():
            if p.ndim >= 2:
                a = p.detach().numpy()
                back = gguf.quants.dequantize(gguf.quants.quantize(a, qtype), qtype).reshape(a.shape)
                p.copy_(torch.from_numpy(back.astype("float32")))
    return out


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_path, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny model with random (non-zero) A and B, so merging changes the logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_path), dtype=torch.float32)
    torch.manual_seed(1)
    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    out = tmp_path_factory.mktemp("adapter") / "my-adapter"
    get_peft_model(base, cfg).save_pretrained(out)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_path)
    return out


@pytest.fixture(scope="module")
def exports(tiny_model_path, adapter_dir, tmp_path_factory):
    """{(source, quant): (ExportResult, reference model, tokenizer)} for the tiny model and the adapter."""
    from tunelens.export import export_gguf
    from tunelens.models import load_model

    out = {}
    for source, spec in (("tiny", "tiny-random"), ("adapter", str(adapter_dir))):
        loaded = load_model(spec, merge_adapter=True)
        for quant in ("f32", "f16", "q8_0"):
            folder = tmp_path_factory.mktemp(f"{source}-{quant}")
            out[source, quant] = (export_gguf(spec, folder / f"{source}.{quant}.gguf", quant=quant), loaded.model,
                                  loaded.tokenizer)
    return out


CASES = [(s, q) for s in ("tiny", "adapter") for q in ("f32", "f16", "q8_0")]


@pytest.mark.parametrize("source, quant", CASES)
def test_logits_match_the_merged_model(exports, source, quant):
    result, reference, tokenizer = exports[source, quant]
    back = _load_back(result.path)
    got, want = _logits(back, tokenizer), _logits(reference, tokenizer)
    assert_close_relative(got, want, rel=BOUND[quant], what=f"{source} {quant} logits")
    # Layout, not quantisation: against weights rounded the same way, the file is exact.
    assert_close_relative(got, _logits(_rounded(reference, quant), tokenizer), rel=EXACT,
                          what=f"{source} {quant} logits vs {quant}-rounded weights")


def test_an_unmerged_export_would_fail(exports, tiny_model_path):
    """The base model's logits are far outside every bound from the merged adapter's: the test
    above would catch an export that forgot to merge."""
    from tunelens.models import load_model

    _, merged, tokenizer = exports["adapter", "f32"]
    base = load_model(str(tiny_model_path)).model
    want, wrong = _logits(merged, tokenizer), _logits(base, tokenizer)
    assert float((wrong - want).norm() / want.norm()) > 10 * BOUND["q8_0"]


def test_q_k_left_unpermuted_would_fail(tmp_path, monkeypatch):
    """llama.cpp's LLAMA layout interleaves rotary pairs; transformers' loader undoes it. An export
    that skips the permutation loads, but its logits are off by far more than the f32 bound."""
    import tunelens.export.gguf_export as ge
    from tunelens.models import load_model

    monkeypatch.setattr(ge, "_permute", lambda weights, n_head, n_kv: weights)
    result = ge.export_gguf("tiny-random", tmp_path / "bad.gguf", quant="f32", modelfile=False)
    loaded = load_model("tiny-random")
    want, got = _logits(loaded.model, loaded.tokenizer), _logits(_load_back(result.path), loaded.tokenizer)
    assert float((got - want).norm() / want.norm()) > 2 * BOUND["f16"]  # 7.6e-3 measured
    with pytest.raises(AssertionError):
        assert_close_relative(got, want, rel=BOUND["f16"], what="unpermuted")


@pytest.mark.parametrize("source", ["tiny", "adapter"])
def test_tokenizer_and_chat_template_round_trip(exports, source):
    from transformers import AutoTokenizer

    result, _, tokenizer = exports[source, "q8_0"]
    back = AutoTokenizer.from_pretrained(str(result.path.parent), gguf_file=result.path.name)
    for text in TEXTS + ["<|im_start|>user\nhello<|im_end|>\n", "  leading spaces\tand tabs\n\n"]:
        assert back(text)["input_ids"] == tokenizer(text)["input_ids"], text
        assert back.decode(back(text)["input_ids"]) == tokenizer.decode(tokenizer(text)["input_ids"])
    assert back.chat_template == tokenizer.chat_template
    for messages in CONVERSATIONS:
        assert back.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert (back.bos_token_id, back.eos_token_id, back.pad_token_id) == \
        (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)


def _fields(path: Path) -> dict:
    from tunelens.export.vocab import gguf_metadata

    return gguf_metadata(path)


def test_metadata_and_tensor_types(exports, adapter_dir):
    import gguf

    from tunelens.export.vocab import gguf_metadata
    from tunelens.models.tokenizer import smollm2_gguf_path

    source = gguf_metadata(smollm2_gguf_path())
    for (kind, quant), (result, model, _) in exports.items():
        meta = _fields(result.path)
        assert meta["general.architecture"] == "llama"
        assert meta["general.file_type"] == {"f32": 0, "f16": 1, "q8_0": 7}[quant]
        assert meta["general.quantization_version"] == gguf.GGML_QUANT_VERSION
        assert meta["llama.block_count"] == model.config.num_hidden_layers
        assert meta["llama.embedding_length"] == model.config.hidden_size
        assert meta["llama.attention.head_count_kv"] == model.config.num_key_value_heads
        assert meta["llama.rope.dimension_count"] == model.config.head_dim
        assert meta["llama.vocab_size"] == model.config.vocab_size
        # tiny-random carries SmolLM2's tokenizer, so the embedded GGUF's tokenizer keys are copied
        for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                    "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            assert meta[key] == source[key], key
        assert meta["tokenizer.ggml.pre"] == "smollm"
        assert meta["tokenizer.ggml.add_bos_token"] is False
        assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (1, 2)
        assert meta["tokenizer.chat_template"] == source["tokenizer.chat_template"]
        assert meta["general.base_model.0.name"] == "tunelens/tiny-random"
        if kind == "adapter":
            assert meta["tunelens.adapter"] == str(adapter_dir)
            assert "merged in" in meta["general.description"]
        types = result.tensor_types
        assert "output.weight" not in types  # tied: llama.cpp reads token_embd
        for name, t in types.items():
            if name.endswith("_norm.weight"):
                assert t == "F32", name
            else:
                assert t == {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}[quant], name
        assert result.fallbacks == []


def test_row_not_a_multiple_of_the_block_falls_back_to_f16(tmp_path):
    """gguf-py cannot put a row of 48 into 32-wide Q8_0 blocks: that tensor is kept f16 and said so."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunelens.export import export_gguf
    from tunelens.models import resolve_model

    tiny, _, _ = resolve_model("tiny-random", progress=False)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    result = export_gguf(str(tmp_path / "m"), tmp_path / "m.gguf", quant="q8_0", modelfile=False)
    assert result.tensor_types["blk.0.ffn_down.weight"] == "F16"
    assert result.tensor_types["blk.0.ffn_up.weight"] == "Q8_0"
    assert [f.split(":")[0] for f in result.fallbacks] == ["blk.0.ffn_down.weight"]
    assert _load_back(result.path) is not None


# --------------------------------------------------------------------- other architectures

def _tiny_variant(kind: str, folder: Path) -> Path:
    """A tiny random Mistral or Qwen2 (untied output, non-default rope theta and eps) with SmolLM2's tokenizer."""
    from transformers import (AutoTokenizer, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    from tunelens.models import resolve_model

    tiny, _, _ = resolve_model("tiny-random", progress=False)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    config_cls, model_cls, extra = {"mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None}),
                                    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {})}[kind]
    cfg = config_cls(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, rope_theta=50000.0,
                     rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, **extra)
    torch.manual_seed(2)
    model = model_cls(cfg)
    if kind == "qwen2":  # q/k/v biases are zero at init; make them matter
        with torch.no_grad():
            for layer in model.model.layers:
                for p in (layer.self_attn.q_proj.bias, layer.self_attn.k_proj.bias, layer.self_attn.v_proj.bias):
                    p.normal_(0, 0.5)
    out = folder / f"tiny-{kind}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("kind, arch", [("mistral", "llama"), ("qwen2", "qwen2")])
def test_mistral_and_qwen2(tmp_path, kind, arch):
    from transformers import AutoTokenizer

    from tunelens.export import export_gguf
    from tunelens.models import load_model

    src = _tiny_variant(kind, tmp_path)
    loaded = load_model(str(src))
    want = _logits(loaded.model, loaded.tokenizer)
    for quant in ("f32", "q8_0"):
        result = export_gguf(str(src), tmp_path / f"{kind}.{quant}.gguf", quant=quant, modelfile=False)
        assert result.architecture == arch
        assert "output.weight" in result.tensor_types  # untied
        meta = _fields(result.path)
        assert meta[f"{arch}.rope.freq_base"] == pytest.approx(50000.0)
        # Built from the transformers tokenizer (no source GGUF recorded). For mistral, llama.cpp's
        # probe-text hash names it, as convert_hf_to_gguf.py would; in a qwen2 folder transformers
        # gives the same vocabulary Qwen2's split regex, and the pre-tokenizer's shape names that.
        assert meta["tokenizer.ggml.pre"] == {"mistral": "smollm", "qwen2": "qwen2"}[kind]
        back_tok = AutoTokenizer.from_pretrained(str(result.path.parent), gguf_file=result.path.name)
        for text in TEXTS:
            assert back_tok(text)["input_ids"] == loaded.tokenizer(text)["input_ids"], text
        if kind == "qwen2":
            assert result.tensor_types["blk.0.attn_q.bias"] == "F32"
        back = _load_back(result.path)
        assert type(back).__name__ == ("Qwen2ForCausalLM" if kind == "qwen2" else "LlamaForCausalLM")
        got = _logits(back, loaded.tokenizer)
        assert_close_relative(got, want, rel=BOUND[quant], what=f"{kind} {quant}")
        assert_close_relative(got, _logits(_rounded(loaded.model, quant), loaded.tokenizer), rel=EXACT,
                              what=f"{kind} {quant} vs rounded weights")


def test_unsupported_architecture_is_named(tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from tunelens.errors import TunelensError
    from tunelens.export import export_gguf
    from tunelens.models import resolve_model

    tiny, _, _ = resolve_model("tiny-random", progress=False)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path / "g")
    tok.save_pretrained(tmp_path / "g")
    with pytest.raises(TunelensError, match=r"does not support the architecture 'gpt2'.*llama, mistral, qwen2"):
        export_gguf(str(tmp_path / "g"), tmp_path / "g.gguf")
    assert not (tmp_path / "g.gguf").exists()


def test_q4_k_m_without_llama_cpp_says_what_to_install(tmp_path, monkeypatch):
    import tunelens.export.gguf_export as ge
    from tunelens.errors import ConfigError

    monkeypatch.setattr(ge, "_llama_cpp_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install llama-cpp-python"):
        ge.export_gguf("tiny-random", tmp_path / "m.gguf", quant="q4_k_m")
    assert list(tmp_path.iterdir()) == []


def test_q4_k_m_through_llama_cpp(exports, tmp_path):
    """Only where llama-cpp-python is installed. The tiny model's rows (64, 128) are shorter than
    llama.cpp's 256-wide K-quant blocks, so its quantiser falls back to q5_0/q8_0 for every matrix;
    the fallbacks are reported. Measured error vs the merged model: <= 1.1e-1 (norm), 1.5e-1 (max
    entry) over the tiny model and the adapter -> bound 3e-1."""
    skip_without_usable_llama_cpp()  # q4_k_m needs its quantiser
    from tunelens.export import export_gguf

    for source, spec in (("tiny", "tiny-random"), ("adapter", str(exports["adapter", "f32"][0].adapter))):
        _, reference, tokenizer = exports[source, "f32"]
        result = export_gguf(spec, tmp_path / f"{source}.gguf", quant="q4_k_m", modelfile=False)
        assert _fields(result.path)["general.file_type"] == 15
        matrices = [n for n in result.tensor_types if not n.endswith("_norm.weight")]
        assert sorted(f.split(":")[0] for f in result.fallbacks) == sorted(matrices)
        assert all(result.tensor_types[n] in ("Q5_0", "Q8_0") for n in matrices)
        got, want = _logits(_load_back(result.path), tokenizer), _logits(reference, tokenizer)
        assert_close_relative(got, want, rel=0.3, what=f"{source} q4_k_m")


# llama.cpp's logits (its own kernels, an f16 KV cache) against the merged transformers model,
# measured over TEXTS on the tiny model and the adapter: f32 <= 3.7e-4 (norm) / 7.1e-4 (max entry),
# f16 <= 8.4e-4 / 1.25e-3, q8_0 <= 1.7e-2 / 2.9e-2. Bounds with margin:
LLAMA_CPP_BOUND = {"f32": 2e-3, "f16": 4e-3, "q8_0": 6e-2}


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0"])
def test_llama_cpp_reads_the_file(exports, quant):
    """llama.cpp itself loads the exported merged adapter: the same token ids as the transformers
    tokenizer (the tokenizer.ggml.* keys work), logits within the bound, and (f32, f16) the same
    arg-max token at every position."""
    skip_without_usable_llama_cpp()
    import llama_cpp
    import numpy as np

    result, reference, tokenizer = exports["adapter", quant]
    llm = llama_cpp.Llama(model_path=str(result.path), n_ctx=256, logits_all=True, verbose=False, n_threads=1)
    try:
        got, want = [], []
        for text in TEXTS:
            ids = tokenizer(text)["input_ids"]
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
            llm.reset()
            llm.eval(ids)
            got.append(torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float64)))
            want.append(_logits_one(reference, ids))
    finally:
        llm.close()
    got, want = torch.cat(got), torch.cat(want)
    assert_close_relative(got, want, rel=LLAMA_CPP_BOUND[quant], what=f"llama.cpp {quant} logits")
    if quant != "q8_0":
        assert got.argmax(-1).tolist() == want.argmax(-1).tolist()


def _logits_one(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].double()


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    import tunelens.export.gguf_export as ge

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ge, "_tensors", boom)
    from tunelens.errors import TunelensError

    with pytest.raises(TunelensError, match="No space left on device"):
        ge.export_gguf("tiny-random", tmp_path / "m.gguf")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_existing_file_is_replaced_whole(tmp_path):
    from tunelens.export import export_gguf

    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")
    export_gguf("tiny-random", out, quant="f16", modelfile=False)
    assert out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]
