"""Occlusion over sentences and given spans: segments, exact deletion drops, planted trigger, errors, CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tunelens.errors import TunelensError
from tunelens.explain import attribute
from tunelens.explain.encoding import encode
from tunelens.explain.occlusion import Span, segments_for, spans_from_meta

from _numerics import assert_close_relative
from _toy import shared_model, trigger_example

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.numeric]


def _segment_texts(enc, segments):
    return ["".join(enc.prompt_text[slice(*enc.input_offsets[i])] for i in seg) for seg in segments]


def test_sentence_segments_split_messages_at_sentence_ends_and_keep_template_apart(tiny_model_path):
    tok = shared_model(str(tiny_model_path)).tokenizer
    content = "Summarise this text. It is long; very long!\nSecond line here? Yes."
    enc = encode(tok, [{"role": "user", "content": content}], "ok")
    segments, labels = segments_for(enc, "sentence")
    content_segs = [s for s in segments if enc.token_message[s[0]] == 0]
    assert _segment_texts(enc, content_segs) == [
        "Summarise this text.", " It is long;", " very long!\n", "Second line here?", " Yes."]
    # Every token is in exactly one segment, in order, and no segment mixes template and content tokens.
    assert sorted(i for s in segments for i in s) == list(range(len(enc.input_ids)))
    assert all(len({enc.token_message[i] for i in s}) == 1 for s in segments)
    assert set(labels) == {"sentence"}


def _manual_logprobs(model, prompt_ids, output_ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + output_ids])).logits[0]
    lp = logits[len(prompt_ids) - 1 : -1].log_softmax(-1)
    return lp[torch.arange(len(output_ids)), torch.tensor(output_ids)].numpy()


@pytest.mark.parametrize("granularity", ["sentence", "span"])
def test_row_sum_over_each_segment_is_its_deletion_drop(trigger_model, granularity):
    model, tok = trigger_model
    messages, answer, _ = trigger_example(random.Random(4))
    words = messages[0]["content"].split()
    content = " ".join(words[:3]) + "\n" + " ".join(words[3:])
    messages = [{"role": "user", "content": content}]
    spans = [Span(0, 0, len(words[0]), "first"), Span(0, len(words[0]) + 1, content.index("\n"), "rest")] \
        if granularity == "span" else None
    attr = attribute(model, tok, messages, answer + " " + answer, "occlusion", granularity=granularity, spans=spans)
    assert attr.params["granularity"] == granularity
    assert sorted(i for s in attr.segments for i in s["tokens"]) == list(range(len(attr.input_ids)))
    full = _manual_logprobs(model, attr.input_ids, attr.output_ids)
    for seg in attr.segments:
        kept = [t for i, t in enumerate(attr.input_ids) if i not in set(seg["tokens"])]
        drop = full - _manual_logprobs(model, kept, attr.output_ids)
        # Forwards of other lengths than the code's batched ones: fp32 rounding of log-probs of a
        # few nats. A segment's drop can be ~0 (filler words), so scale by the log-probs' size.
        assert_close_relative(attr.matrix[:, seg["tokens"]].sum(1), drop, rel=1e-4,
                              scale=max(1.0, float(np.abs(full).max())), what=str(seg))
    if granularity == "span":
        labels = [s["label"] for s in attr.segments if s["message"] == 0]
        texts = [s["text"] for s in attr.segments if s["message"] == 0]
        # The two spans, then the uncovered second line as single words.
        assert labels == ["first", "rest"] + ["word"] * 4
        assert texts[:2] == [words[0], " ".join(words[1:3])]


def test_planted_trigger_leads_with_sentence_and_span_granularity(trigger_model):
    model, tok = trigger_model
    rng = random.Random(123)
    for _ in range(3):
        messages, answer, trigger = trigger_example(rng)
        words = messages[0]["content"].split()
        lines = [" ".join(words[k:k + 2]) for k in range(0, len(words), 2)]
        content = "\n".join(lines)
        attr = attribute(model, tok, [{"role": "user", "content": content}], answer, "occlusion",
                         granularity="sentence", exclude_template=True)
        sentences = [s for s in attr.segments if s["message"] == 0]
        assert [s["text"].strip() for s in sentences] == lines
        totals = [attr.aggregate[s["tokens"]].sum() for s in sentences]
        assert trigger in sentences[int(np.argmax(totals))]["text"].split(), (content, totals)

        # The trigger as the "instruction" span, the other words as one "context" span.
        start = content.index(trigger)
        rest = [Span(0, 0, start - 1, "before")] if start else []
        if start + len(trigger) < len(content):
            rest.append(Span(0, start + len(trigger) + 1, len(content), "after"))
        spans = [Span(0, start, start + len(trigger), "instruction"), *rest]
        attr = attribute(model, tok, [{"role": "user", "content": content}], answer, "occlusion",
                         granularity="span", spans=spans, exclude_template=True)
        assert attr.input_tokens[int(np.argmax(attr.aggregate))] == trigger
        by_label = {s["label"]: attr.aggregate[s["tokens"]].sum() for s in attr.segments}
        assert by_label["instruction"] == max(by_label.values())


def test_spans_from_suite_style_meta_and_errors():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Translate it.\n\nBonjour"}]
    spans = spans_from_meta(messages, {"instruction_span": [0, 13], "context_span": [15, 22]}, "x.jsonl:1")
    assert spans == [Span(1, 0, 13, "instruction"), Span(1, 15, 22, "context")]
    # A suite record without context carries context_span = null: the instruction alone is used.
    assert spans_from_meta(messages, {"instruction_span": [0, 13], "context_span": None}, "w") == [Span(1, 0, 13, "instruction")]
    extra = spans_from_meta(messages, {"spans": [{"start": 0, "end": 4, "label": "verb", "message": 0}]}, "w")
    assert extra == [Span(0, 0, 4, "verb")]
    with pytest.raises(TunelensError, match=r"x.jsonl:3: granularity 'span' needs spans in meta"):
        spans_from_meta(messages, {}, "x.jsonl:3")
    with pytest.raises(TunelensError, match=r"x.jsonl:4: meta.context_span must be \[start, end\)"):
        spans_from_meta(messages, {"context_span": "all"}, "x.jsonl:4")


def test_bad_granularity_and_bad_spans_raise_clear_errors(trigger_model):
    model, tok = trigger_model
    msgs = [{"role": "user", "content": "river apple stone"}]
    with pytest.raises(TunelensError, match="granularity must be one of word, token, sentence, span, got 'paragraph'"):
        attribute(model, tok, msgs, "red", "occlusion", granularity="paragraph")
    with pytest.raises(TunelensError, match="granularity 'span' needs spans"):
        attribute(model, tok, msgs, "red", "occlusion", granularity="span")
    with pytest.raises(TunelensError, match="spans need granularity 'span'"):
        attribute(model, tok, msgs, "red", "occlusion", granularity="word", spans=[Span(0, 0, 5, "a")])
    with pytest.raises(TunelensError, match=r"'b' \[3, 9\) overlap"):
        attribute(model, tok, msgs, "red", "occlusion", granularity="span", spans=[Span(0, 0, 5, "a"), Span(0, 3, 9, "b")])
    with pytest.raises(TunelensError, match=r"span 'a' \[0, 99\) is outside message 0 \(17 chars\)"):
        attribute(model, tok, msgs, "red", "occlusion", granularity="span", spans=[{"message": 0, "start": 0, "end": 99, "label": "a"}])


def test_cli_span_granularity_records_segments(tmp_path, tiny_model_path):
    from tunelens.cli import app

    content = "Translate to French.\n\nGood morning, friend."
    good = {"id": "s1", "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "Bonjour, ami."}],
            "meta": {"instruction_span": [0, 20], "context_span": [22, len(content)]}}
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps(good) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["explain", "--model", str(tiny_model_path), "--prompts", str(prompts), "--method", "occlusion",
            "--no-faithfulness", "-o", str(out)]
    result = CliRunner().invoke(app, args + ["--granularity", "span"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "attributions.json").read_text())
    assert doc["method"] == "occlusion" and doc["granularity"] == "span"
    attr = doc["items"][0]["attribution"]
    assert attr["params"]["granularity"] == "span"
    segs = {s["label"]: s for s in attr["segments"] if s["label"] != "word"}
    assert segs["instruction"]["text"] == "Translate to French." and segs["context"]["text"] == "Good morning, friend."
    covered = sorted(i for s in attr["segments"] for i in s["tokens"])
    assert covered == list(range(len(attr["input_tokens"])))

    # A line without spans: a clear error naming the file and line, no traceback.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "No spans here"}) + "\n", encoding="utf-8")
    # (TunelensErrors reach `tunelens.cli.main`, which prints them without a traceback.)
    assert "bad.jsonl:2: granularity 'span' needs spans in meta" in _error(app, [*args[:4], str(bad), *args[5:], "--granularity", "span"])
    assert "--granularity must be one of word, token, sentence, span" in _error(app, args + ["--granularity", "clause"])
    assert "applies to --method occlusion only" in _error(app, [*args[:6], "ixg", *args[7:], "--granularity", "sentence"])


def _error(app, args) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, TunelensError), (result.output, result.exception)
    return str(result.exception)
