"""The language curation step: real Alpaca and deepset texts, what is not judged, the config, and
the step's place in the registry and in curate()."""

from __future__ import annotations

import json

import pytest
from pydantic import Field, ValidationError, create_model

from tunelens.data.config import CurateConfig
from tunelens.data.curate import build_steps, curate
from tunelens.data.importers import load_records
from tunelens.data.steps import all_steps, check_partition, config_sections
from tunelens.data.steps.language import Language, LanguageConfig
from tunelens.records import make_conversation, make_preference


def conv(user, reply, row=0):
    return make_conversation([{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                             source="t", source_file=None, row=row, license="MIT")


def run(step, records):
    result = step.run(records)
    check_partition(step.name, records, result)
    return result


ENGLISH = "Explain in a few sentences why the sky looks blue during the day and red at sunset, please."
GERMAN = "Erkläre in ein paar Sätzen, warum der Himmel am Tag blau und bei Sonnenuntergang rot aussieht."
ENGLISH_REPLY = "Sunlight is scattered by the molecules of the air, and blue light is scattered far more than red light."
FRENCH_REPLY = "La lumière du soleil est diffusée par les molécules de l'air, et la lumière bleue bien plus que la rouge."


def test_alpaca_slice_loses_only_its_spanish_reply(shared_data):
    records = load_records(shared_data / "alpaca_data.json", license="CC-BY-NC-4.0").records[:400]
    res = run(Language(LanguageConfig(enabled=True)), records)
    # Alpaca is English; record 258 asks for a sentence in Spanish and its reply is Spanish.
    assert [r.record["id"] for r in res.rejected] == ["alpaca_data:258"]
    (rej,) = res.rejected
    assert rej.reason == "reply in es (p=1.00), not an allowed language (en)"
    assert rej.detail == {"field": "messages[1].content", "language": "es", "probability": 1.0}
    assert res.stats["reasons"] == {"es": 1} and res.stats["allow"] == ["en"]
    assert res.stats["judgeable_texts"] + res.stats["unjudgeable_texts"] == 800  # a prompt and a reply each
    assert LanguageConfig(enabled=True, allow=["en", "es"]).allow == ["en", "es"]
    assert run(Language(LanguageConfig(enabled=True, allow=["en", "es"])), records).rejected == []


def test_german_prompts_of_deepset_are_found(shared_data):
    rows = [json.loads(line) for line in (shared_data / "deepset_prompt_injections_test.jsonl").read_text().splitlines()]
    records = [conv(row["text"], "I can only help with questions about our products.", row=i) for i, row in enumerate(rows)]
    res = run(Language(LanguageConfig(enabled=True)), records)
    assert res.stats["reasons"] == {"de": 19}  # seeded detection: the same count on every run
    assert all(r.reason.startswith("prompt in de ") and r.detail["field"] == "messages" for r in res.rejected)
    assert run(Language(LanguageConfig(enabled=True, allow=["en", "de"])), records).rejected == []


def test_short_texts_code_and_lists_of_names_are_not_judged():
    # langdetect calls each of these (as a whole text) Afrikaans, Romanian or Spanish with p=1.0.
    unjudgeable = [
        conv("How did Julius Caesar die?", "He was stabbed."),
        conv("Write a factorial function in Python that works for any non-negative integer you give it.",
             "def factorialize(num):\n  factorial = 1\n  for i in range(num, 0, -1):\n    factorial *= i\n  return factorial"),
        conv("Name the countries of South America, one by one, as a list separated with dashes please.",
             "- Canada - United States - Mexico - Brazil - Argentina - Chile - Colombia - Venezuela - Cuba - Peru"),
    ]
    res = run(Language(LanguageConfig(enabled=True)), unjudgeable)
    assert res.kept == unjudgeable and res.stats["judgeable_texts"] == 2  # the two long English prompts


def test_fields_and_preference_records():
    step = Language(LanguageConfig(enabled=True))
    mixed = conv(ENGLISH, FRENCH_REPLY)
    assert step.problem(conv(ENGLISH, ENGLISH_REPLY)) is None
    assert step.problem(mixed).text.startswith("reply in fr ")
    assert step.problem(conv(GERMAN, FRENCH_REPLY)).text.startswith("prompt in de ")  # the prompt comes first
    assert Language(LanguageConfig(enabled=True, fields="prompt")).problem(mixed) is None
    assert Language(LanguageConfig(enabled=True, fields="responses")).problem(conv(GERMAN, ENGLISH_REPLY)) is None
    pref = make_preference([{"role": "user", "content": ENGLISH}], ENGLISH_REPLY, FRENCH_REPLY,
                           source="t", source_file=None, row=1, license="MIT")
    found = step.problem(pref)
    assert found.text.startswith("rejected in fr ") and found.detail["field"] == "rejected" and found.key == "fr"


def test_config_checks_language_codes():
    assert LanguageConfig(allow=["ZH", " en "]).allow == ["zh", "en"]  # 'zh' allows zh-cn and zh-tw
    assert Language(LanguageConfig(allow=["zh"]))._allowed("zh-tw")
    with pytest.raises(ValidationError, match=r"unknown language code\(s\) \['eng'\]; langdetect knows af, ar"):
        LanguageConfig(allow=["eng"])
    with pytest.raises(ValidationError):
        LanguageConfig(allow=[])
    with pytest.raises(ValidationError, match="Extra inputs"):
        LanguageConfig(treshold=0.5)


def test_the_step_is_registered_with_its_own_config_section():
    names = [s.name for s in all_steps()]
    assert names.index("quality") < names.index("language") < names.index("decontaminate")
    assert config_sections()["language"] is LanguageConfig
    assert "language" not in [s.name for s in build_steps(CurateConfig())]  # off by default


def test_curate_runs_it_once_curate_config_has_its_section(tmp_path):
    # What CurateConfig becomes when its step sections come from the registry (config_sections()).
    with_language = create_model("CurateConfigWithLanguage", __base__=CurateConfig,
                                 language=(LanguageConfig, Field(default_factory=LanguageConfig)))
    config = with_language.model_validate({"language": {"enabled": True}})
    assert [s.name for s in build_steps(config)][-2:] == ["quality", "language"]
    records = [conv(ENGLISH, ENGLISH_REPLY), conv(GERMAN, "Weil das blaue Licht stärker gestreut wird als das rote Licht.", row=1),
               conv("Hi", "Hallo", row=2)]
    report = curate(records, tmp_path / "out", config)
    assert (report.records_in, report.kept, report.rejected) == (3, 2, 1)
    step = report.step("language")
    assert (step.records_in, step.kept, step.rejected, step.stats["reasons"]) == (3, 2, 1, {"de": 1})
    (reject,) = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert reject["step"] == "language" and reject["reason"].startswith("prompt in de ")
    datasheet = (tmp_path / "out" / "datasheet.md").read_text()
    assert "| language | prompt in de | 1 |" in datasheet and "language:\n  enabled: true" in datasheet
