"""The HTML, diff and PNG views, and `tunelens explain` end to end on tiny models."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from tunelens.cli import app as root_app
from tunelens.errors import TunelensError
from tunelens.explain import (
    Attribution,
    attribute,
    render_diff_html,
    render_html,
    save_heatmap_png,
)

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def attr(tiny_model_path):
    from _toy import shared_model

    tiny = shared_model(str(tiny_model_path))
    return attribute(tiny.model, tiny.tokenizer, [{"role": "user", "content": "Say <b>hi</b> & bye"}], "Hi there", "occlusion")


def test_html_is_self_contained_and_carries_every_row(attr):
    page = render_html(attr)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=['\"]?https?:", page), "no external assets"
    # User text is escaped, template tokens are marked, every output token is hoverable.
    assert "<b>hi</b>" not in page
    assert page.count('class="tl-tok tl-out"') == len(attr.output_tokens)
    assert page.count("tl-in tl-tmpl") == sum(attr.template_mask)
    blob = re.search(r'<script type="application/json" class="tl-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob.replace("<\\/", "</"))
    # The page stores 6 decimals: entries move by at most 5e-7 (an absolute bound).
    assert np.allclose(np.array(data["matrix"]), attr.matrix, rtol=0, atol=1e-5)
    assert "mouseenter" in page and "tlShade(root, data.matrix[j])" in page
    fragment = render_html(attr, full_page=False)
    assert "<html" not in fragment and "tlInit" in fragment


def test_diff_page_shows_both_and_the_difference(attr):
    other = Attribution(**{**attr.__dict__, "matrix": attr.matrix * 0 + 1.0, "response": "tuned says this"})
    page = render_diff_html(attr, other)
    assert page.count('class="tl-attr"') == 3
    assert "tuned says this" in page and "difference in attribution share" in page
    several = render_diff_html([(attr, other), (attr, attr)])
    assert several.count('class="tl-attr"') == 6


def test_heatmap_png(attr, tmp_path):
    path = save_heatmap_png(attr, tmp_path / "h" / "x.png", max_tokens=10)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_cli_writes_every_output(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "Name three colours.", "response": "Red, green and blue."}) + "\n"
        + json.dumps({"id": "rec-1", "messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}]}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(root_app, ["explain", "--model", "tiny-random", "--base", "tiny-random", "--prompts", str(prompts),
                                         "--exclude-template", "--n-random", "2", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "attributions.json").read_text())
    assert doc["schema"] == "tunelens.attributions/v1" and doc["skipped"] == []
    assert [it["id"] for it in doc["items"]] == ["prompts.jsonl:1", "rec-1"]
    first = Attribution.from_dict(doc["items"][0]["attribution"])
    assert first.response == "Red, green and blue." and first.exclude_template
    assert np.all(first.aggregate[np.array(first.template_mask)] == 0)
    assert doc["items"][1]["base_attribution"]["response"] == "Hi!"
    for name in ("attributions.html", "diff.html", "heatmaps/000.png", "heatmaps/base_001.png"):
        assert (out / name).is_file(), name
    faith = json.loads((out / "faithfulness.json").read_text())
    assert len(faith["items"]) == 2 and {"per_k", "better_than_random"} <= set(faith["items"][0])


def test_cli_errors_name_the_problem(tmp_path):
    app = root_app
    with pytest.raises(TunelensError, match="exactly one of --prompt"):
        CliRunner().invoke(app, ["explain", "--model", "tiny-random", "-o", str(tmp_path)], catch_exceptions=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n', encoding="utf-8")
    with pytest.raises(TunelensError, match=r"bad.jsonl:2: expected 'messages'"):
        CliRunner().invoke(app, ["explain", "--model", "tiny-random", "--prompts", str(bad), "-o", str(tmp_path)], catch_exceptions=False)


def test_cli_train_run_writes_tda(tmp_path):
    """A run directory shaped like `tunelens train`'s output: model/, manifest.json naming the data."""
    from _toy import (
        one_thread,
        toy_model,
        train_toy,
        trigger_example,
        trigger_tokenizer,
    )
    from tunelens.records import make_conversation, write_jsonl

    rng = random.Random(0)
    tok = trigger_tokenizer()
    records = []
    for i in range(12):
        messages, answer, _ = trigger_example(rng)
        records.append(make_conversation(messages + [{"role": "assistant", "content": answer}], source="toy",
                                         source_file="toy.jsonl", row=i, license="CC0-1.0"))
    data = tmp_path / "train.jsonl"
    write_jsonl(data, records)
    run = tmp_path / "run"
    with one_thread():
        model = toy_model(tok)
        train_toy(model, tok, [r["messages"] for r in records], steps=5)
    model.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    (run / "manifest.json").write_text(json.dumps({"data": [{"path": str(data), "sha256": ""}]}))
    (run / "config.yaml").write_text("max_length: 64\n")
    out = tmp_path / "out"
    query = records[3]["messages"][0]["content"]
    result = CliRunner().invoke(root_app, ["explain", "--model", str(run / "model"), "--prompt", query, "--response",
                                         records[3]["messages"][1]["content"], "--train-run", str(run), "--top-k", "3",
                                         "--no-faithfulness", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tda = json.loads((out / "tda.json").read_text())
    top = tda["items"][0]["top"]
    assert len(top) == 3 and top[0]["provenance"]["source"] == "toy" and top[0]["provenance"]["license"] == "CC0-1.0"
    assert top[0]["provenance"]["row"] == 3  # the queried example itself is the most similar
    assert not (out / "faithfulness.json").exists()
    assert list((run / "explain_cache").glob("tda_*.npy")), "projected training gradients are cached in the run"
