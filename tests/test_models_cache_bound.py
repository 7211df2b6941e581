"""The derived-model caches (GGUF exports, merged checkpoints) are bounded: least recently used
entries go first, and an entry in use, a recently used one or one being built is never removed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tunelens.errors import TunelensError
from tunelens.models.store import _lock_path, build_atomically, derived_cache_budget, evict_lru, mark_used


def _entry(folder: Path, name: str, size: int, age_s: float) -> Path:
    d = folder / name
    d.mkdir(parents=True)
    (d / "model.gguf").write_bytes(b"\0" * size)
    t = time.time() - age_s
    os.utime(d, (t, t))
    return d


def test_evicts_least_recently_used_until_within_budget(tmp_path):
    old, mid, new = (_entry(tmp_path, n, 1000, age) for n, age in (("old", 9e4), ("mid", 8e4), ("new", 7e4)))
    removed = evict_lru(tmp_path, 2500)
    assert [p.name for p, _ in removed] == ["old"] and removed[0][1] == 1000
    assert not old.exists() and mid.is_dir() and new.is_dir()
    assert evict_lru(tmp_path, 2500) == []  # within budget now: nothing more goes


def test_use_moves_an_entry_to_the_back_of_the_queue(tmp_path):
    old, mid = _entry(tmp_path, "old", 1000, 9e4), _entry(tmp_path, "mid", 1000, 8e4)
    mark_used(old)  # used now: it is the most recent, and within the hour
    removed = evict_lru(tmp_path, 1000)
    assert [p.name for p, _ in removed] == ["mid"] and old.is_dir() and not mid.exists()


def test_keeps_the_entry_in_use_recent_ones_and_one_being_built(tmp_path):
    a, b, c = (_entry(tmp_path, n, 1000, age) for n, age in (("a", 9e4), ("b", 8e4), ("c", 60)))
    from filelock import FileLock

    with FileLock(str(_lock_path(b))):  # another process is (re)building b
        removed = evict_lru(tmp_path, 0, keep=a)
    assert removed == [] and a.is_dir() and b.is_dir() and c.is_dir()  # over budget, but nothing may go
    assert [p.name for p, _ in evict_lru(tmp_path, 0, keep=a)] == ["b"]  # the build is over
    assert c.is_dir(), "an entry used within the hour must stay"


def test_hidden_build_leftovers_and_locks_are_not_entries(tmp_path):
    built = build_atomically(tmp_path / "x", lambda tmp: (tmp / "model.gguf").write_bytes(b"\0" * 10),
                             is_complete=lambda p: (p / "model.gguf").is_file())
    t = time.time() - 9e4
    os.utime(built, (t, t))
    assert (tmp_path / ".x.lock").exists()
    removed = evict_lru(tmp_path, 0)
    assert [p.name for p, _ in removed] == ["x"] and (tmp_path / ".x.lock").exists()


@pytest.mark.parametrize("raw, expected", [("", 6e9), ("0.5", 5e8), ("none", None), ("unlimited", None)])
def test_budget_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("TUNELENS_DERIVED_CACHE_GB", raw)
    assert derived_cache_budget() == expected


@pytest.mark.parametrize("raw", ["lots", "-1"])
def test_a_bad_budget_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("TUNELENS_DERIVED_CACHE_GB", raw)
    with pytest.raises(TunelensError, match="TUNELENS_DERIVED_CACHE_GB"):
        derived_cache_budget()


def test_gguf_for_marks_its_entry_used_and_bounds_the_folder(tmp_path, monkeypatch, tiny_model_path):
    """Through the real export path: an old entry beyond the budget goes, the fresh export stays."""
    pytest.importorskip("gguf")
    from tunelens.generate.backends import gguf_for
    from tunelens.models.store import cache_dir

    monkeypatch.setenv("TUNELENS_CACHE", str(tmp_path / "cache"))  # never the user's own cache: budget 0 below
    folder = cache_dir() / "gguf"
    stale = _entry(folder, "0000stale-test-entry-f32", 10, 9e4)
    monkeypatch.setenv("TUNELENS_DERIVED_CACHE_GB", "none")
    out, _ = gguf_for(str(tiny_model_path), "f32", progress=False)
    assert stale.is_dir()  # no bound: nothing removed
    before = out.parent.stat().st_mtime
    os.utime(out.parent, (before - 9e4, before - 9e4))
    said: list[str] = []
    monkeypatch.setenv("TUNELENS_DERIVED_CACHE_GB", "0")
    out2, _ = gguf_for(str(tiny_model_path), "f32", progress=False, say=said.append)
    assert out2 == out and out.is_file(), "the entry in use was removed"
    assert not stale.exists() and any("least recently used" in s for s in said)
    assert time.time() - out.parent.stat().st_mtime < 60, "using an entry must mark it used"
