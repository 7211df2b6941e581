"""The toxicity scorer: the shipped artifact works offline; training writes a usable artifact."""

import csv

import pytest

from tunelens.errors import TunelensError
from tunelens.safety.toxicity import DEFAULT_ARTIFACT, load_scorer, read_davidson, train_toxicity


def test_shipped_artifact_scores_offline():
    assert DEFAULT_ARTIFACT.is_file() and DEFAULT_ARTIFACT.stat().st_size < 5_000_000
    scorer = load_scorer()
    toxic = ["you stupid bitch, shut up", "fuck you faggot", "shut up you ugly hoe"]
    clean = ["Have a lovely day at the beach!", "The capital of France is Paris.",
             "Here is a recipe for banana bread: mix flour, eggs and bananas."]
    scores = scorer.score(toxic + clean)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert min(scores[:3]) > 0.5 > max(scores[3:])
    assert scorer.is_toxic(["you stupid bitch"]) == [True]
    assert scorer.score([]) == []
    with pytest.raises(TypeError):
        scorer.score("a single string")


def test_shipped_metrics_match_docs_claim():
    info = load_scorer().info
    assert info["roc_auc"] > 0.95 and info["f1"] > 0.9
    assert info["f1"] > info["majority_baseline_f1"]


def test_bad_backend_and_missing_artifact(tmp_path):
    with pytest.raises(TunelensError, match="unknown toxicity backend"):
        load_scorer("perspective")
    with pytest.raises(TunelensError, match=str(tmp_path / "none.joblib")):
        load_scorer(path=tmp_path / "none.joblib")
    bogus = tmp_path / "bogus.joblib"
    bogus.write_text("not a joblib file")
    with pytest.raises(TunelensError, match="cannot read toxicity artifact"):
        load_scorer(path=bogus)


def test_detoxify_backend_errors_clearly_when_unavailable():
    try:
        import detoxify  # noqa: F401
    except ImportError:
        with pytest.raises(TunelensError, match="pip install detoxify"):
            load_scorer("detoxify")
        return
    try:  # installed: either the weights load and score, or the error names Detoxify (offline)
        scorer = load_scorer("detoxify")
    except TunelensError as exc:
        assert "Detoxify" in str(exc)
    else:
        assert 0.0 <= scorer.score(["hello"])[0] <= 1.0


class _FakeDetoxify:
    """Stands in for detoxify.Detoxify (its weights cannot be downloaded here): fixed per-head scores."""

    loaded_with: list = []

    def __init__(self, name, device="cpu"):
        if name == "missing":
            raise OSError("weights not found")
        self.loaded_with.append((name, device))

    def predict(self, texts):
        n = len(texts)
        return {"toxicity": [0.1 * (i + 1) for i in range(n)], "insult": [0.9 if "idiot" in t else 0.0 for t in texts],
                "threat": [0.05] * n, "sexual_explicit": [1.0] * n}  # not a toxicity head: ignored


def test_detoxify_adapter_takes_the_max_over_toxicity_heads(monkeypatch):
    import sys
    import types

    import tunelens.safety.toxicity as tox

    fake = types.ModuleType("detoxify")
    fake.Detoxify = _FakeDetoxify
    monkeypatch.setitem(sys.modules, "detoxify", fake)
    monkeypatch.setattr(tox, "_LOADED", {})
    scorer = load_scorer("detoxify")
    assert scorer.backend == "detoxify" and _FakeDetoxify.loaded_with[-1] == ("original", "cpu")
    scores = scorer.score(["fine", "you idiot", "ok"])
    assert scores == pytest.approx([0.1, 0.9, 0.3])
    assert scorer.is_toxic(["you idiot", "fine"]) == [True, False]
    with pytest.raises(TunelensError, match="cannot load Detoxify weights"):
        load_scorer("detoxify", path="missing")


def test_train_on_a_davidson_sample(tmp_path, shared_data):
    src = shared_data / "davidson_hate_speech_offensive_labeled_data.csv"
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    sample = rows[:1500] + [r for r in rows if r["class"] == "2"][:500]
    small = tmp_path / "davidson_small.csv"
    with small.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sample)
    texts, labels = read_davidson(small)
    assert len(texts) == 2000 and 0 < sum(labels) < 2000
    out = tmp_path / "tox.joblib"
    metrics = train_toxicity(small, out, max_word_features=2000, max_char_features=2000)
    assert out.is_file() and (tmp_path / "tox_metrics.json").is_file()
    assert metrics["test_rows"] == 400 and 0.5 < metrics["roc_auc"] <= 1.0
    scorer = load_scorer(path=out)
    assert scorer.score(["fuck you bitch"])[0] > scorer.score(["what a nice sunny morning"])[0]


def test_bad_label_row_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(",count,hate_speech,offensive_language,neither,class,tweet\n0,3,0,0,3,7,hello\n")
    with pytest.raises(TunelensError, match="row 2 has class '7'"):
        read_davidson(bad)


def test_score_command_json():
    import json

    from typer.testing import CliRunner

    from tunelens.cli import app

    # A toxic reply that is no refusal, and a polite refusal. (The bare insult "you stupid bitch" was used here until
    # refusal v5 scored it 0.56 as a refusal, v4 0.43: a dismissive reply without a request sits near the boundary;
    # the refusal card lists it among its failure modes.)
    result = CliRunner().invoke(app, ["safety", "score", "--json", "I hate you and everyone like you.",
                                      "I'm sorry, but I can't help with that."])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert rows[0]["toxic"] is True and rows[0]["refusal_score"] < 0.5
    assert rows[1]["toxic"] is False and rows[1]["refusal_score"] >= 0.5
