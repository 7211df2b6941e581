"""The feedback loop on the tiny model: serve -> chat -> feedback -> export -> DPO -> load the adapter."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tunelens.cli import app as root_app
from tunelens.serve.app import create_app
from tunelens.serve.config import ServeConfig


def test_feedback_to_dpo_adapter(tmp_path, tiny_model_path):
    import openai

    from tunelens.models import load_model
    from tunelens.train import TrainConfig, train

    db = f"sqlite:///{tmp_path}/loop.db"
    runner = CliRunner()
    created = runner.invoke(root_app, ["serve", "keys", "create", "--name", "loop", "--db", db])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("tl_")

    cfg = ServeConfig.model_validate({"models": [{"name": "tiny", "path": str(tiny_model_path)}], "db_url": db,
                                      "license": "CC0-1.0"})
    app = create_app(cfg)
    questions = ["What colour is the sky?", "Name a fruit.", "What is two plus two?"]
    answers = ["The sky is blue.", "An apple.", "Four."]
    with TestClient(app) as client:
        oa = openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)
        for q, a in zip(questions, answers):
            out = oa.chat.completions.create(model="tiny", messages=[{"role": "user", "content": q}], max_tokens=6)
            r = client.post("/v1/feedback", headers={"Authorization": f"Bearer {key}"},
                            json={"completion_id": out.id, "rating": "down", "correction": a})
            assert r.status_code == 200

    pairs = tmp_path / "pairs.jsonl"
    exported = runner.invoke(root_app, ["feedback", "export", "-o", str(pairs), "--db", db, "--license", "CC0-1.0"])
    assert exported.exit_code == 0, exported.output
    assert "3 preference pairs" in exported.output and "3 SFT records" in exported.output
    records = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert sorted(r["chosen"] for r in records) == sorted(answers)
    assert {r["provenance"]["source"] for r in records} == {"feedback"}

    result = train(TrainConfig(method="dpo", model=str(tiny_model_path), data=[str(pairs)],
                               output_dir=str(tmp_path / "dpo"), max_steps=2, batch_size=2, max_length=128,
                               save_steps=2), progress=False)
    assert result.steps == 2 and result.adapter_dir is not None
    loaded = load_model(str(result.adapter_dir))
    assert type(loaded.model).__name__.startswith("Peft") or hasattr(loaded.model, "peft_config")

    # the tuned adapter serves again behind the same API
    cfg2 = ServeConfig.model_validate({"models": [{"name": "tuned", "path": str(result.adapter_dir)}], "db_url": db})
    with TestClient(create_app(cfg2, preloaded={"tuned": loaded})) as client:
        r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "tuned", "messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 4})
        assert r.status_code == 200 and r.json()["model"] == "tuned"
