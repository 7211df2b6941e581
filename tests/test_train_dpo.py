"""DPO on preference records (HH-RLHF helpful pairs from ../shared/data) with the tiny model."""

from __future__ import annotations

import gzip
import json
import math
import re

import pytest

from tunelens.errors import TunelensError
from tunelens.records import make_conversation, make_preference, write_jsonl
from tunelens.train import TrainConfig, train

TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_pair_to_record(row: dict, i: int) -> dict | None:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' dialogues -> a preference record (shared prompt, last reply differs)."""

    def turns(text: str) -> list[dict]:
        parts = TURN.split(text)[1:]
        return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
                for who, said in zip(parts[::2], parts[1::2])]

    chosen, rejected = turns(row["chosen"]), turns(row["rejected"])
    if not chosen or chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant":
        return None
    return make_preference(chosen[:-1], chosen[-1]["content"], rejected[-1]["content"], source="hh-rlhf-helpful",
                           source_file="hh_rlhf_helpful_base_test.jsonl.gz", row=i, license="MIT")


@pytest.fixture(scope="module")
def hh_records(shared_data, tmp_path_factory):
    records = []
    with gzip.open(shared_data / "hh_rlhf_helpful_base_test.jsonl.gz", "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            rec = hh_pair_to_record(json.loads(line), i)
            if rec is not None:
                records.append(rec)
            if len(records) == 12:
                break
    path = tmp_path_factory.mktemp("hh") / "hh.jsonl"
    write_jsonl(path, records)
    return path


@pytest.mark.numeric
def test_dpo_on_hh_rlhf_reports_rewards(hh_records, tmp_path, tiny_model_path):
    cfg = TrainConfig(method="dpo", model=str(tiny_model_path), data=[str(hh_records)], output_dir=str(tmp_path),
                      max_steps=4, batch_size=2, learning_rate=5e-3, max_length=160, length_policy="drop",
                      save_steps=100, seed=0)
    result = train(cfg, progress=False)
    assert result.steps == 4 and (tmp_path / "adapter" / "adapter_config.json").is_file()
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert {"reward_margin", "reward_accuracy", "reward_chosen", "reward_rejected", "loss"} <= row.keys()
        assert 0.0 <= row["reward_accuracy"] <= 1.0
    # policy == reference at step 1 (LoRA's B starts at zero): -log sigmoid(0) = log 2. Only the
    # two forwards' rounding separates them: ~1e-5 nats in sequence log-probs, times beta 0.1,
    # times the slope 0.5 of -log sigmoid at 0; 1e-4 relative is 100x that.
    assert rows[0]["loss"] == pytest.approx(math.log(2), rel=1e-4)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert "final_reward_margin" in summary and "final_reward_accuracy" in summary
    # Long HH dialogues exceed 160 tokens: dropped with a reason, and counted.
    dropped = [json.loads(ln) for ln in (tmp_path / "dropped_examples.jsonl").read_text().splitlines()]
    assert summary["examples_dropped"] == len(dropped) > 0
    assert summary["examples_used"] + len(dropped) == summary["examples_total"] == 12
    assert all("max_length 160" in d["reason"] for d in dropped)


def test_dpo_needs_preference_records(tmp_path, tiny_model_path):
    data = tmp_path / "c.jsonl"
    write_jsonl(data, [make_conversation([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                         source="t", source_file=None, row=0, license="MIT")])
    cfg = TrainConfig(method="dpo", model=str(tiny_model_path), data=[str(data)], output_dir=str(tmp_path / "o"))
    with pytest.raises(TunelensError, match="--method dpo needs preference records"):
        train(cfg, progress=False)
