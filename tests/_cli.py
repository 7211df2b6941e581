"""Run the root ``tunelens`` command in-process, as a user would from the shell."""

from __future__ import annotations

import sys

import pytest


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr joined on one line: rich wraps long lines); never a traceback."""
    from tunelens.cli import main

    monkeypatch.setattr(sys, "argv", ["tunelens", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, captured.out, " ".join(captured.err.split())
