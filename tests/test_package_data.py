"""Every data file the package reads at run time ships in its wheel: a non-editable install (pip install
tunelens) has only what ``[tool.setuptools.package-data]`` names. The labelled JSONL sets were once left out."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "tunelens"


def _globs() -> list[str]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return conf["tool"]["setuptools"]["package-data"]["tunelens"]


def _shipped(rel: str, globs: list[str]) -> bool:
    # setuptools' "**/" also matches files at the top of the package
    return any(fnmatch.fnmatch(rel, g) or (g.startswith("**/") and fnmatch.fnmatch(rel, g[3:])) for g in globs)


def test_every_data_file_of_the_package_is_named_by_package_data():
    globs = _globs()
    files = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and p.name != ".gitkeep" and "__pycache__" not in p.parts]
    assert len(files) >= 30 and any(f.endswith(".jsonl") for f in files)
    assert [f for f in files if not _shipped(f, globs)] == []


def test_the_check_itself_catches_a_missing_kind():
    assert not _shipped("safety/data/x.jsonl", ["**/*.json"])
    assert _shipped("safety/data/x.jsonl", ["**/*.jsonl"]) and _shipped("top.jsonl", ["**/*.jsonl"])
