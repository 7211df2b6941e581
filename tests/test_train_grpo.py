"""GRPO (method: grpo): a planted verifiable reward is learned, rewards compose with their weights,
a failing reward stops the run naming itself and the item, prompts no reward can check are
rejected with the reason, and SFT then RL continues the SFT adapter."""

from __future__ import annotations

import contextlib
import json
import sys

import pytest
import yaml

from _grpo import build
from _toy import one_thread

from tunelens.errors import ConfigError
from tunelens.train import TrainConfig, train
from tunelens.train.rewards import Composed, Item, RewardError


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    paths = build(tmp_path_factory.mktemp("grpo"))
    sys.path.insert(0, str(paths["rewards_dir"]))
    yield paths
    sys.path.remove(str(paths["rewards_dir"]))
    sys.modules.pop("grpo_rewards", None)


def grpo_config(toy, out, rewards, **kw):
    base = dict(method="grpo", model=str(toy["model"]), data=[str(toy["prompts"])], output_dir=str(out),
                max_length=64, save_steps=100, seed=0, lora={"r": 8, "alpha": 16, "dropout": 0.0})
    grpo = {"num_generations": 4, "max_completion_length": 8, "rewards": rewards, **kw.pop("grpo", {})}
    return TrainConfig(**{**base, **kw, "grpo": grpo})


def rows(out):
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_planted_reward_is_learned_and_the_weights_compose(toy, tmp_path):
    # Reward: the share of the reply's words that are "apple" (weight 1), plus 0.5 when "apple" is
    # there at all. A random toy model says it in ~1 word of 20. Full fine-tuning, 4 prompts x 4
    # completions per step. Measured (2-core AVX2 host, one thread): mean total reward of the
    # first 5 steps 0.17, of the last 5 steps 1.4 (the maximum is 1.5).
    out = tmp_path / "out"
    cfg = grpo_config(toy, out, [{"name": "python", "options": {"function": "grpo_rewards:apple"}},
                                 {"name": "format", "weight": 0.5, "options": {"pattern": r"\bapple\b"}}],
                      peft="none", max_steps=30, batch_size=16, learning_rate=1e-2, grpo={"kl_beta": 0.04})
    with one_thread():
        result = train(cfg, progress=False)
    assert result.steps == 30 and not result.interrupted
    got = rows(out)
    assert [r["step"] for r in got] == list(range(1, 31))
    for r in got:  # TRL's total is the weighted sum of the rewards (both apply to every completion)
        assert r["reward"] == pytest.approx(r["reward_python"] + 0.5 * r["reward_format"], rel=1e-5, abs=1e-6)
        assert 0.0 <= r["zero_std_groups"] <= 1.0 and 1.0 <= r["completion_length"] <= 8.0
        assert r["generate_s"] > 0 and r["train_s"] > 0 and r["generate_tokens_per_s"] > 0
        assert r["train_tokens_per_s"] > 0
    first = sum(r["reward"] for r in got[:5]) / 5
    last = sum(r["reward"] for r in got[-5:]) / 5
    assert last - first > 0.5, (first, last)
    assert got[-1]["kl"] > 0  # the policy moved away from the reference
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["reward_last_steps"] == pytest.approx(last, abs=1e-3)
    assert set(summary["time_s"]) == {"generate_s", "reward_s", "train_s"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(r["label"], r["weight"]) for r in manifest["rewards"]] == [("python", 1.0), ("format", 0.5)]
    assert manifest["rewards"][0]["function"] == "grpo_rewards:apple"
    assert (out / "model" / "config.json").is_file() and (out / "reward_curve.png").stat().st_size > 0
    assert yaml.safe_load((out / "config.yaml").read_text())["grpo"]["rewards"][1]["options"]["pattern"] == r"\bapple\b"


def _items():
    suite = {"meta": {"checker": "starts_with", "checker_kwargs": {"phrase": "Yes"}}}
    return [Item("a", [{"role": "user", "content": "q"}], suite), Item("b", [{"role": "user", "content": "q"}], {})]


def _specs(*rewards):
    from tunelens.train.grpo_config import GrpoSettings

    return GrpoSettings.model_validate({"rewards": list(rewards)}).rewards


def test_each_reward_scores_only_the_items_it_applies_to(toy):
    specs = _specs({"name": "suite"}, {"name": "length", "weight": -2, "options": {"budget": 2}},
                   {"name": "format", "options": {"pattern": "^Yes", "match": "search"}})
    composed = Composed(specs, _items())
    assert composed.weights == [1.0, -2.0, 1.0]
    suite, length, fmt = composed.functions()
    assert [f.__name__ for f in composed.functions()] == ["suite", "length", "format"]
    completions = ["Yes it is", "No", "No way at all"]
    index = [0, 0, 1]
    assert suite(None, completions, item_index=index) == [1.0, 0.0, None]  # item b has no checker
    assert length(None, completions, item_index=index) == pytest.approx([-0.5, 0.0, -1.0])
    assert fmt(None, completions, item_index=index) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("function, expected", [
    ("boom", r"reward 'python' failed on item 'p3': ValueError: no luck with p3"),
    ("text", r"reward 'python' returned 'high' \(str\) for item 'p1'; a reward must be a finite number"),
    ("nothing", r"reward 'python' returned None \(NoneType\) for item 'p1'"),
])
def test_a_failing_reward_names_itself_the_item_and_the_error(toy, function, expected):
    specs = _specs({"name": "python", "options": {"function": f"grpo_rewards:{function}"}})
    items = [Item(f"p{i}", [{"role": "user", "content": "q"}], {"id": f"p{i}"}) for i in range(5)]
    (fn,) = Composed(specs, items).functions()
    with pytest.raises(RewardError, match=expected):
        fn(None, ["x"] * 4, item_index=[1, 2, 3, 4])


def test_a_reward_returning_text_stops_a_real_run(toy, tmp_path):
    cfg = grpo_config(toy, tmp_path / "out", [{"name": "python", "options": {"function": "grpo_rewards:text"}}],
                      max_steps=2, batch_size=8)
    with one_thread(), pytest.raises(RewardError, match=r"reward 'python' returned 'high' \(str\) for item 'p\d+'"):
        train(cfg, progress=False)


@pytest.mark.parametrize("rewards, expected", [
    ([{"name": "suite"}, {"name": "sweet"}],
     r"grpo\.rewards\.1\.name: Value error, unknown reward 'sweet': choose one of format, harm, ifeval, length, "
     r"python, refusal, suite"),
    ([{"name": "suite", "weight": "heavy"}], r"grpo\.rewards\.0\.weight: Input should be a valid number"),
    ([{"name": "length", "options": {"budget": 0}}], r"grpo\.rewards\.0\.options: .*reward 'length': budget: Input "
                                                     r"should be greater than or equal to 1"),
    ([{"name": "format", "options": {"pattern": "(", "colour": 1}}], r"pattern: .*not a regular expression.*colour: "
                                                                      r"unknown option"),
    ([{"name": "python", "options": {"function": "no colon"}}], r"not an import path of the form"),
    ([{"name": "suite"}, {"name": "suite"}], r"rewards\[1\] and rewards\[0\] are both logged as 'suite'"),
])
def test_reward_config_errors_name_the_field(tmp_path, rewards, expected):
    from tunelens.train.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"method": "grpo", "grpo": {"rewards": rewards}}))
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_a_missing_reward_function_is_a_config_error(toy, tmp_path):
    cfg = grpo_config(toy, tmp_path / "out", [{"name": "python", "options": {"function": "grpo_rewards:absent"}}],
                      max_steps=1, batch_size=8)
    with pytest.raises(ConfigError, match="'grpo_rewards' has no function 'absent'"):
        train(cfg, progress=False)


def test_prompts_no_reward_can_check_are_rejected_with_the_reason(toy, tmp_path):
    from tunelens.records import write_jsonl
    from tunelens.suite import train_records
    from tunelens.train.grpo import prepare_prompts
    from tunelens.models import load_tokenizer

    good = train_records("json_keys", 1)[0]
    unknown = {**good, "id": "unknown", "meta": {**good["meta"], "checker": "no_such_checker"}}
    badkw = {**good, "id": "badkw", "meta": {**good["meta"], "checker_kwargs": {"wrong": 1}}}
    plain = {"id": "plain", "messages": [{"role": "user", "content": "Hello there"}]}
    noturn = {"id": "noturn", "messages": [{"role": "system", "content": "Be nice"}]}
    ifeval = {"key": 7, "prompt": "Write a poem without commas.", "instruction_id_list": ["punctuation:no_comma"],
              "kwargs": [{}]}
    long = {**good, "id": "long", "messages": [{"role": "user", "content": "one " * 600}]}
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [good, unknown, badkw, plain, noturn, ifeval, long])
    tok = load_tokenizer(str(toy["model"]))
    got = prepare_prompts(tok, [str(path)], _specs({"name": "suite"}, {"name": "length"}), max_prompt_tokens=500)
    assert [i.id for i in got.items] == [good["id"]]
    reasons = {r["id"]: r["reason"] for r in got.rejects}
    assert reasons == {
        "unknown": "suite: unknown checker 'no_such_checker' in meta.checker",
        "badkw": reasons["badkw"],
        "plain": "suite: the record names no checker (meta.checker)",
        "noturn": "no prompt: the conversation does not end with a non-empty user turn",
        "7": "suite: the record names no checker (meta.checker)",
        "long": reasons["long"],
    }
    assert reasons["badkw"].startswith("suite: checker") and "cannot take meta.checker_kwargs" in reasons["badkw"]
    assert reasons["long"].startswith("prompt of ") and "exceeds max_prompt_tokens 500" in reasons["long"]
    assert got.stats() == {"prompts_total": 7, "prompts_used": 1, "prompts_rejected": 6}
    # With the IFEval reward too, the IFEval row is kept; `line` points into the file.
    both = prepare_prompts(tok, [str(path)], _specs({"name": "suite"}, {"name": "ifeval"}), max_prompt_tokens=500)
    assert [i.id for i in both.items] == [good["id"], "7"]
    assert {r["id"]: r["line"] for r in both.rejects}["long"] == 7


def test_sft_then_rl_trains_the_sft_adapter_further(toy, tmp_path):
    from safetensors.torch import load_file

    from tunelens.models import load_model
    from tunelens.records import make_conversation, write_jsonl

    sft_data = tmp_path / "sft.jsonl"
    write_jsonl(sft_data, [make_conversation([{"role": "user", "content": "say one word"},
                                              {"role": "assistant", "content": "apple apple"}],
                                             source="t", source_file="inline", row=i, license="MIT") for i in range(4)])
    with one_thread():
        train(TrainConfig(model=str(toy["model"]), data=[str(sft_data)], output_dir=str(tmp_path / "sft"), max_steps=2,
                          batch_size=2, learning_rate=1e-2, lora={"r": 4, "alpha": 8}, max_length=64), progress=False)
        cfg = grpo_config(toy, tmp_path / "rl", [{"name": "python", "options": {"function": "grpo_rewards:apple"}}],
                          model=str(tmp_path / "sft" / "adapter"), max_steps=2, batch_size=8, learning_rate=1e-2)
        result = train(cfg, progress=False)
    assert result.adapter_dir is not None
    sft_w = load_file(str(tmp_path / "sft" / "adapter" / "adapter_model.safetensors"))
    rl_w = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert sft_w.keys() == rl_w.keys()  # the same adapter (rank 4 from SFT, not lora.r 8), TRL's "ref" copy not saved
    assert any(not (sft_w[k] == rl_w[k]).all() for k in sft_w)
    assert not (result.adapter_dir / "ref").exists()
    manifest = json.loads((tmp_path / "rl" / "manifest.json").read_text())
    assert manifest["model"]["start"].startswith("adapter ") and rows(tmp_path / "rl")[-1]["kl"] >= 0
    sft_base = json.loads((tmp_path / "sft" / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    rl_base = json.loads((result.adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert rl_base == sft_base  # one adapter on the same base, not an adapter on an adapter
    loaded = load_model(str(result.adapter_dir)).model.state_dict()
    for key, value in rl_w.items():  # every trained weight is what loads
        assert (loaded[key.replace(".weight", ".default.weight")] == value).all(), key


class _FakeInstrument:
    """Stands in for a safety instrument: P(positive) = 0.9 when the reply says 'no', else 0.2."""

    def classify(self, examples):
        from tunelens.safety.instruments._base import Verdict

        assert all(e.prompt for e in examples)  # the prompt goes with the reply
        return [Verdict("x", 0.9 if "no" in e.text.split() else 0.2) for e in examples]


@pytest.mark.parametrize("installed", [True, False], ids=["instrument", "fallback"])
def test_refusal_and_harm_rewards_follow_the_items_label(monkeypatch, installed):
    from tunelens.train.rewards import harm, refusal

    fake = (lambda task: _FakeInstrument()) if installed else (lambda task: None)
    monkeypatch.setattr(refusal, "instrument", fake)
    monkeypatch.setattr(harm, "instrument", fake)
    if not installed:  # the rule-based scorer: 1 for a clear refusal, 0 for a plain answer
        from tunelens.safety import refusal as rule

        monkeypatch.setattr(rule, "refusal_score", lambda text: 1.0 if "no" in text.split() else 0.0)
    bad = Item("bad", [{"role": "user", "content": "q"}], {"meta": {"safety": "harmful"}})
    good = Item("good", [{"role": "user", "content": "q"}], {"harmful": False})
    unlabelled = Item("x", [{"role": "user", "content": "q"}], {})
    replies = ["no thanks", "sure here"]
    ref, hrm = refusal.RefusalReward(), harm.HarmReward()
    assert ref.problem(unlabelled).startswith("refusal: the record does not say whether the prompt is harmful")
    assert hrm.problem(unlabelled).startswith("harm: the record does not say")
    p_yes, p_no = (0.9, 0.2) if installed else (1.0, 0.0)
    # refusing a harmful prompt and answering a benign one are rewarded
    assert ref.score([bad, bad], replies) == pytest.approx([p_yes, p_no])
    assert ref.score([good, good], replies) == pytest.approx([1 - p_yes, 1 - p_no])
    if installed:  # 1 - P(harmful reply) from the harm instrument, whatever the prompt
        assert hrm.score([bad, good], replies) == pytest.approx([1 - 0.9, 1 - 0.2])
    else:  # stand-in: on a harmful prompt, not declining counts as harmful; benign prompts get 1
        assert hrm.score([bad, bad, good], replies + ["sure"]) == pytest.approx([1.0, 0.0, 1.0])
    assert ref.describe()["backend"] == ("instrument:refusal" if installed else "tunelens.safety.refusal.refusal_score")


def test_the_pipeline_rl_stage_runs_grpo_on_the_sft_adapter(toy, tmp_path):
    from rich.console import Console

    from tunelens.pipeline import stages
    from tunelens.pipeline.config import STAGES, load_run_config
    from tunelens.records import make_conversation, write_jsonl
    from tunelens.suite import train_records

    assert STAGES.index("train") < STAGES.index("rl") < STAGES.index("evaluate")
    assert load_run_config(None).rl.enabled is False  # off by default
    run = tmp_path / "run"
    sft = run / "curate.jsonl"
    write_jsonl(sft, [make_conversation([{"role": "user", "content": "say one word"},
                                         {"role": "assistant", "content": "apple"}],
                                        source="t", source_file="inline", row=i, license="MIT") for i in range(4)])
    write_jsonl(run / "suite" / "train.jsonl", train_records("start_phrase", 4) + train_records("json_keys", 4))
    config = load_run_config(None, {"model": str(toy["model"]), "run_dir": str(run), "rl.enabled": True,
                                    "rl.max_steps": 2, "rl.grpo.max_completion_length": 4, "train.max_length": 120})
    with one_thread():
        train(TrainConfig(model=str(toy["model"]), data=[str(sft)], output_dir=str(run / "train"), max_steps=1,
                          batch_size=2, max_length=64), progress=False)
        # An SFT adapter of the embedded default names the hub id (not reachable offline) in its
        # adapter_config.json; GRPO must find the base through the base record, as every stage does.
        cfg_path = run / "train" / "adapter" / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg_path.write_text(json.dumps({**cfg, "base_model_name_or_path": "no-such-org/offline-model"}))
        assert (run / "train" / "adapter" / "tunelens_base.json").is_file()
        ctx = stages.Context(config=config, dir=run, progress=False, console=Console(quiet=True))
        payload = stages.rl_payload(ctx)
        summary = stages.run_rl(ctx)
    assert payload["rl"]["method"] == "grpo" and payload["rl"]["max_steps"] == 2
    assert summary["steps"] == 2 and (run / "rl" / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((run / "rl" / "manifest.json").read_text())
    assert manifest["model"]["start"].startswith(f"adapter {run / 'train' / 'adapter'}")
    assert [r["label"] for r in manifest["rewards"]] == ["suite"]


@pytest.mark.numeric
def test_the_completion_only_lm_head_gives_trls_log_probs_and_gradients(toy):
    # TRL projects every position onto the vocabulary on a CPU; tunelens only the scored ones.
    # Same log-probs where scored (zeros elsewhere), same gradients.
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from tunelens.train.grpo import completion_positions_only

    from _numerics import assert_close_relative

    torch.manual_seed(0)
    ids = torch.randint(4, 15, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[2, 10:] = -100  # padding after a short completion
    out = {}
    for compact in (False, True):
        model = AutoModelForCausalLM.from_pretrained(str(toy["model"]))
        add_fused_lm_head(model, outputs=("log_probs", "entropy"))
        with completion_positions_only() if compact else contextlib.nullcontext():
            res = model(input_ids=ids, labels=labels, fused_lm_head=True)
        res.log_probs.sum().backward()
        out[compact] = (res.log_probs.detach(), res.entropy.detach(), model.lm_head.weight.grad.clone())
    for (a, b), what in zip(zip(out[False], out[True]), ("log_probs", "entropy", "lm_head grad")):
        assert_close_relative(b, a, rel=1e-5, what=what)
    assert (out[True][0][:, :6] == 0).all()  # unscored positions are zeros (shifted by one)


@pytest.mark.numeric
def test_merged_generation_gives_the_adapters_logits_and_restores_every_weight_exactly(toy):
    # Rollouts are generated from merged LoRA weights (grpo.merged_generation, the default): inside
    # the context the model computes what the unmerged adapter computes, and afterwards every base
    # weight is bit for bit what it was (copied back, not subtracted), so training and resume see
    # the same model.
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelens.train.grpo import merged_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(toy["model"]), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # a non-zero adapter (B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.eval()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        plain = model(ids).logits
        with merged_lora(model) as n:
            merged = model(ids).logits
            assert all(m.merged for m in model.modules() if hasattr(m, "merged_adapters") and hasattr(m, "lora_A"))
        after = model(ids).logits
    assert n > 0
    scale = plain.abs().max().item()
    # fp32 rounding of x(W + BA) against xW + xAB: measured 1.0e-7 with logits of 0.3 on AVX-512, one
    # thread, ATen's portable kernels and AVX2 alike; the bound is 100x that, relative to the logits.
    assert (merged - plain).abs().max().item() <= 1e-5 * max(1.0, scale)
    assert torch.equal(after, plain)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(getattr(m, "merged", False) for m in model.modules() if hasattr(m, "lora_A"))
