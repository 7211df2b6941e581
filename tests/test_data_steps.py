"""Every curation step on small hand-made inputs, plus the partition invariant guard."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from datasketch import MinHash

from tunelens.data.importers import _unhashable_record
from tunelens.data.steps import InvariantError, StepResult, check_partition
from tunelens.data.steps.decontam import Decontaminate, DecontaminateConfig
from tunelens.data.steps.dedup import DedupConfig, ExactDedup, NearDedup, minhash_signatures
from tunelens.data.steps.licence import LicensePolicy, LicensePolicyConfig
from tunelens.data.steps.quality import Quality, QualityConfig
from tunelens.data.steps.rewrite import Normalise, NormaliseConfig, PiiConfig, RedactPii
from tunelens.data.steps.toxicity import Toxicity, ToxicityConfig, resolve_scorer
from tunelens.data.steps.validate import Validate, ValidateConfig
from tunelens.data.textkeys import TokenCache, WordHasher, ngram_hashes, words
from tunelens.errors import ConfigError, TunelensError
from tunelens.records import make_conversation, make_preference


def conv(user, reply, license="MIT", row=0, system=None):
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    return make_conversation(msgs, source="t", source_file="t.jsonl", row=row, license=license)


def run(step, records):
    result = step.run(records)
    check_partition(step.name, records, result)
    return result


def test_validate_rules():
    good = conv("Hi", "Hello")
    bad = {
        "empty turn": conv("   ", "x"),
        "unknown role": make_conversation([{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}], source="t", source_file=None, row=1, license=None),
        "non-string field": conv("q", 42),
        "invalid UTF-8": _unhashable_record("conversation", [{"role": "user", "content": "bad \ud800"}, {"role": "assistant", "content": "x"}],
                                            {"source": "t", "source_file": None, "row": 9, "license": None}),
        "no assistant turn": make_conversation([{"role": "user", "content": "q"}], source="t", source_file=None, row=2, license=None),
        "over-long field": conv("q", "x" * 101),
        "schema": {**conv("q", "a"), "provenance": "nope"},
        "non-object message": make_conversation(["hi"], source="t", source_file=None, row=3, license=None),
    }
    pref_ok = make_preference([{"role": "user", "content": "q"}], "good", "bad", source="t", source_file=None, row=4, license=None)
    pref_empty = make_preference([{"role": "user", "content": "q"}], "good", " ", source="t", source_file=None, row=5, license=None)
    records = [good, pref_ok, pref_empty, *bad.values()]
    res = run(Validate(ValidateConfig(max_field_chars=100)), records)
    assert res.kept == [good, pref_ok]
    got = [r.reason for r in res.rejected]
    assert len(got) == 1 + len(bad)
    assert got[0] == "empty turn: rejected is empty or whitespace"
    for expected, reason in zip(bad, got[1:]):
        assert reason.startswith(expected), (expected, reason)
    assert res.stats["reasons"]["empty turn"] == 2


def test_validate_disabled_still_checks_the_schema():
    loose = Validate(ValidateConfig(enabled=False))
    empty, broken = conv("  ", "x"), {**conv("q", "a"), "messages": "not a list"}
    res = run(loose, [empty, broken])
    assert res.kept == [empty]
    assert res.rejected[0].reason.startswith("schema: messages")


def test_normalise_records_before_and_after():
    rec = conv("Cafe\u0301  \r\nline  \n\n\n\nend ", "ok")
    res = run(Normalise(NormaliseConfig()), [rec, conv("clean", "text")])
    assert rec["messages"][0]["content"] == "Café\nline\n\nend"
    (change,) = res.changes
    assert change.fields[0]["before"].startswith("Cafe\u0301") and change.fields[0]["after"] == "Café\nline\n\nend"
    res2 = run(Normalise(NormaliseConfig(collapse_spaces=True)), [conv("a  b", "    indented  code")])
    assert res2.kept[0]["messages"][0]["content"] == "a b"
    assert res2.kept[0]["messages"][1]["content"] == "indented code"  # outer whitespace stripped, inner squeezed


def test_pii_step_counts_and_changes():
    recs = [conv("mail me: a@b.com", "ok, calling (555) 123-4567"), conv("nothing", "here")]
    res = run(RedactPii(PiiConfig()), recs)
    assert recs[0]["messages"][0]["content"] == "mail me: [EMAIL]"
    assert res.stats["counts"] == {"EMAIL": 1, "PHONE": 1}
    assert len(res.changes) == 1 and res.changes[0].detail == {"pii": {"EMAIL": 1, "PHONE": 1}}


def test_exact_dedup_on_normalised_text_keeps_first_and_records_cluster():
    a, b, c = conv("What is AI?", "A field."), conv("what  is ai?", "a field.", row=1), conv("Other", "x", row=2)
    res = run(ExactDedup(), [a, b, c])
    assert res.kept == [a, c]
    assert res.rejected[0].detail == {"duplicate_of": a["id"], "cluster": a["id"]}
    assert res.stats["clusters"] == 1 and res.stats["largest"][0]["size"] == 2


def test_minhash_signatures_equal_datasketch():
    cache = TokenCache()
    texts = ["the quick brown fox jumps over the lazy dog", "short one"]
    sig, has = minhash_signatures([cache.hashes(t) for t in texts], 64, 3)
    for text, row in zip(texts, sig):
        shingles, _ = ngram_hashes([cache.hashes(text)], 3, short_as_one=True)
        ref = MinHash(num_perm=64, seed=1, hashfunc=lambda v: v)
        for value in ((shingles >> np.uint64(32)) ^ shingles).astype(np.uint32):
            ref.update(int(value))
        assert np.array_equal(ref.hashvalues, row)
    assert has.all()


def test_near_dedup_finds_edited_copies_and_keeps_distinct_texts():
    base = ("Photosynthesis is the process by which green plants use sunlight to synthesise nutrients from carbon "
            "dioxide and water. It takes place mainly in the leaves, inside chloroplasts that hold chlorophyll, the "
            "pigment that absorbs light energy and gives plants their colour. Oxygen is released as a by-product, "
            "which is why forests matter so much for the air that animals and people breathe every day.")
    near = base.replace("every day", "every single day")  # true word 5-gram Jaccard about 0.86
    other = "The French Revolution began in 1789 and reshaped the political landscape of Europe for the following century"
    recs = [conv("Explain photosynthesis.", base), conv("Explain photosynthesis.", near, row=1), conv("French Revolution?", other, row=2)]
    res = run(NearDedup(DedupConfig(threshold=0.7)), recs)
    assert res.kept == [recs[0], recs[2]]
    assert res.rejected[0].detail["duplicate_of"] == recs[0]["id"] and res.rejected[0].detail["similarity"] >= 0.7
    assert res.stats["clusters"] == 1
    strict = run(NearDedup(DedupConfig(threshold=0.98)), recs[:2])
    assert len(strict.kept) == 2
    # Same prompt, different replies: duplicates only when comparing the prompt side.
    same_prompt = [conv("Explain photosynthesis to a child in two sentences please.", base), conv("Explain photosynthesis to a child in two sentences please.", other, row=1)]
    assert len(run(NearDedup(DedupConfig(threshold=0.8)), same_prompt).kept) == 2
    assert len(run(NearDedup(DedupConfig(threshold=0.8, near_fields="prompt")), same_prompt).kept) == 1


def test_quality_checks():
    recs = {
        "ok": conv("Name a primary colour.", "Red."),
        "boilerplate": conv("Your opinion on cats?", "As an AI language model, I do not have opinions."),
        "nooutput": conv("Draw a logo.", "<nooutput>"),
        "repetition": conv("Write a poem.", "I love you " * 20),
        "echo": conv("Create a looping GIF of a cat running.", "Create a looping GIF of a cat running."),
        "short": conv("Explain gravity in detail.", "Hm"),
    }
    res = run(Quality(QualityConfig(min_response_chars=3)), list(recs.values()))
    assert res.kept == [recs["ok"]]
    checks = [r.detail["check"] for r in res.rejected]
    assert checks == ["boilerplate", "boilerplate", "repetition", "prompt_echo", "too_short"]
    # A reply copied from the prompt (a chosen option) and a restated question are not echoes.
    fine = [conv("Which is a fruit: apple or car?", "Apple"),
            conv("Which country is the world's second-largest producer of olive oil?", "Spain is the world's second-largest producer of olive oil.")]
    assert run(Quality(QualityConfig()), fine).kept == fine
    with pytest.raises(ConfigError, match="invalid regex"):
        Quality(QualityConfig(extra_boilerplate=["(unclosed"]))


def test_decontamination_against_native_eval_files(shared_data, tmp_path):
    ifeval = [json.loads(line) for line in (shared_data / "ifeval_input_data.jsonl").open()][:3]
    gsm = [json.loads(line) for line in (shared_data / "gsm8k_test.jsonl").open()][:3]
    txt = tmp_path / "eval.txt"
    txt.write_text("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi\n\nsecond paragraph")
    cfg = DecontaminateConfig(files=[shared_data / "ifeval_input_data.jsonl", f"{shared_data / 'gsm8k_test.jsonl'}::question", txt])
    step = Decontaminate(cfg)
    recs = [
        conv(ifeval[0]["prompt"], "sure"),
        conv("Please solve: " + gsm[1]["question"], "ok"),
        conv("hi", "Greek: alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"),
        conv("A clean prompt about something else entirely.", "A clean answer."),
        conv("12 words only: one two three four five six seven eight nine ten", gsm[2]["answer"]),  # answer not checked (field=question)
    ]
    res = run(step, recs)
    assert res.kept == [recs[3], recs[4]]
    files = [r.detail["eval_file"] for r in res.rejected]
    assert files == [str(shared_data / "ifeval_input_data.jsonl"), str(shared_data / "gsm8k_test.jsonl"), str(txt)]
    assert res.rejected[1].detail["eval_item"] == 1
    assert len(res.rejected[0].detail["ngram"].split()) == 13
    short_ifeval = sum(len(words(json.loads(line)["prompt"])) < 13 for line in (shared_data / "ifeval_input_data.jsonl").open())
    short_gsm = sum(len(words(json.loads(line)["question"])) < 13 for line in (shared_data / "gsm8k_test.jsonl").open())
    assert res.stats["eval_texts_shorter_than_n"] == short_ifeval + short_gsm + 1  # + "second paragraph"


def test_decontamination_file_errors(tmp_path):
    bad = tmp_path / "e.jsonl"
    bad.write_text('{"label": 1}\n')
    with pytest.raises(TunelensError, match="no evaluation text found"):
        Decontaminate(DecontaminateConfig(files=[bad]))
    with pytest.raises(TunelensError, match=r"field\(s\) \['prompt'\] not found"):
        Decontaminate(DecontaminateConfig(files=[f"{bad}::prompt"]))
    with pytest.raises(TunelensError, match="no such file"):
        Decontaminate(DecontaminateConfig(files=[tmp_path / "missing.jsonl"]))


def test_licence_policy_commercial_preset_and_lists():
    recs = [conv("a", "b", license=x, row=i) for i, x in enumerate(["MIT", "CC-BY-NC-4.0", "unknown", "CC-BY-NC-SA-4.0", "Apache-2.0"])]
    res = run(LicensePolicy(LicensePolicyConfig(preset="commercial")), recs)
    assert [r["provenance"]["license"] for r in res.kept] == ["MIT", "Apache-2.0"]
    reasons = [r.reason for r in res.rejected]
    assert "denied by 'CC-BY-NC-*'" in reasons[0] and reasons[1].startswith("licence unknown") and "commercial" in reasons[1]
    allow = run(LicensePolicy(LicensePolicyConfig(allow=["MIT"])), recs)
    assert [r["provenance"]["license"] for r in allow.kept] == ["MIT"]
    open_policy = LicensePolicy(LicensePolicyConfig())
    assert not open_policy.active and len(run(open_policy, recs).kept) == 5


def keyword_scorer(texts):
    return [0.95 if "idiot" in t.lower() else 0.05 for t in texts]


def test_toxicity_with_any_scorer():
    recs = [conv("Say something.", "You are an idiot."), conv("Say something nice.", "You are great."),
            conv("You idiot, answer!", "Here is a calm answer.")]
    res = run(Toxicity(ToxicityConfig(), keyword_scorer), recs)
    assert res.kept == recs[1:]  # only replies are scored by default
    assert res.rejected[0].detail["score"] == 0.95
    res_all = run(Toxicity(ToxicityConfig(fields="all"), keyword_scorer), recs)
    assert res_all.kept == [recs[1]]
    with pytest.raises(TunelensError, match="expected a probability"):
        Toxicity(ToxicityConfig(), lambda texts: [2.0] * len(texts)).run(recs)
    with pytest.raises(TunelensError, match="returned 1 scores for 3 texts"):
        Toxicity(ToxicityConfig(), lambda texts: [0.0]).run(recs)


def test_scorer_resolution():
    assert resolve_scorer("tests.test_data_steps:keyword_scorer")(["idiot"]) == [0.95]
    with pytest.raises(ConfigError, match="neither 'builtin' nor 'module:function'"):
        resolve_scorer("nope")
    with pytest.raises(ConfigError, match="cannot load"):
        resolve_scorer("tunelens.nothing_here:fn")


def test_builtin_scorer_missing_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tunelens.safety.toxicity", None)  # import now fails as if absent
    with pytest.raises(ConfigError, match="tunelens.safety.toxicity, which is not available"):
        resolve_scorer("builtin")


def test_partition_guard_catches_lost_and_invented_records():
    recs = [conv("a", "b"), conv("c", "d", row=1)]
    with pytest.raises(InvariantError, match="2 records in but 1 kept"):
        check_partition("broken", recs, StepResult(kept=recs[:1]))
    with pytest.raises(InvariantError, match="not the same set"):
        check_partition("broken", recs, StepResult(kept=[recs[0], conv("x", "y")]))


def test_ngram_hashes_mask_windows_across_texts():
    h = WordHasher()
    a, b = h.hashes(words("one two three")), h.hashes(words("four five"))
    hashes, owner = ngram_hashes([a, b], 2)
    assert list(owner) == [0, 0, 1] and len(set(hashes.tolist())) == 3
    joined, _ = ngram_hashes([a + b], 2)
    assert len(joined) == 4 and set(hashes.tolist()) < set(joined.tolist())
