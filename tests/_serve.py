"""A served app over the tiny model (two names, one loaded model), for the serve tests."""

from __future__ import annotations


def make_app(tmp_path, tiny_loaded, **overrides):
    from tunelens.serve.app import create_app
    from tunelens.serve.config import ServeConfig

    cfg = {"models": [{"name": "tiny", "path": "tiny-random"}, {"name": "tiny-b", "path": "tiny-random"}],
           "db_url": f"sqlite:///{tmp_path}/serve.db", "rate_limit": {"enabled": False}, **overrides}
    return create_app(ServeConfig.model_validate(cfg), preloaded={"tiny": tiny_loaded, "tiny-b": tiny_loaded})
