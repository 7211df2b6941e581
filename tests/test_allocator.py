"""The tcmalloc re-exec: when it happens, what it sets, and that the CLI behaves the same under it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tunelens import allocator


def test_plan_for_heavy_commands_only(monkeypatch):
    monkeypatch.setattr(allocator, "find_library", lambda name: f"/lib/lib{name}.so")
    env = allocator.plan_reexec(["tunelens", "train", "-c", "x.yaml"], {"PATH": "/bin"}, "linux")
    assert env["LD_PRELOAD"] == "/lib/libtcmalloc.so" and env[allocator.MARK] == "/lib/libtcmalloc.so"
    assert env["PATH"] == "/bin"
    assert allocator.plan_reexec(["tunelens", "data", "curate"], {}, "linux") is None  # light command
    assert allocator.plan_reexec(["tunelens", "train", "--help"], {}, "linux") is None
    assert allocator.plan_reexec(["tunelens", "train"], {allocator.MARK: "x"}, "linux") is None  # once only
    assert allocator.plan_reexec(["tunelens", "train"], {allocator.ENV: "system"}, "linux") is None
    assert allocator.plan_reexec(["tunelens", "train"], {}, "darwin") is None
    env = allocator.plan_reexec(["tunelens", "run"], {"LD_PRELOAD": "/other.so", allocator.ENV: "jemalloc"}, "linux")
    assert env["LD_PRELOAD"] == "/lib/libjemalloc.so:/other.so"  # keeps what was preloaded already


def test_missing_library_and_bad_choice(monkeypatch, capsys):
    monkeypatch.setattr(allocator, "find_library", lambda name: None)
    assert allocator.plan_reexec(["tunelens", "train"], {}, "linux") is None
    assert capsys.readouterr().err == ""  # auto: silent
    assert allocator.plan_reexec(["tunelens", "train"], {allocator.ENV: "jemalloc"}, "linux") is None
    assert "no jemalloc library" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="TUNELENS_ALLOCATOR='mimalloc'"):
        allocator.plan_reexec(["tunelens", "train"], {allocator.ENV: "mimalloc"}, "linux")


def test_cli_error_and_exit_code_survive_the_reexec(tmp_path):
    """A heavy command with a bad config: same message and exit code, and the re-exec happened when it could."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    code = ("import os, runpy, sys; sys.argv = ['tunelens', 'train', '-c', sys.argv[1]];"
            "import tunelens.train.config as c; orig = c.load_config\n"
            "def spy(*a, **k):\n"
            "    print('ALLOC=' + os.environ.get('TUNELENS_ALLOCATOR_LOADED', 'none'), file=sys.stderr)\n"
            "    return orig(*a, **k)\n"
            "c.load_config = spy\n"
            "from tunelens.cli import entry; entry()")
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "learning_rat: unknown field" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    lib = allocator.find_library("tcmalloc")
    if lib is None:  # nothing to preload: no re-exec, the spy runs in this very process
        assert "ALLOC=none" in proc.stderr
    else:  # re-executed as `python -m tunelens`: the spy is gone, the marker names the library
        assert "ALLOC=" not in proc.stderr


def test_active_allocator_reads_ld_preload(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    assert allocator.active_allocator() == "tcmalloc"
    monkeypatch.setenv("LD_PRELOAD", "")
    assert allocator.active_allocator() == "system"
    assert json.dumps(allocator.active_allocator())


def test_main_called_in_process_never_reexecs(monkeypatch, tmp_path):
    """Tests and embedding code call main(): it must not replace the calling process, whatever the command."""
    import os

    from tunelens import cli

    def no_exec(*args, **kwargs):
        raise AssertionError("main() tried to re-execute the calling process")

    monkeypatch.setattr(os, "execve", no_exec)
    monkeypatch.setattr(allocator, "find_library", lambda name: "/lib/libtcmalloc.so")
    monkeypatch.setattr(sys, "argv", ["tunelens", "train", "-c", str(tmp_path / "missing.yaml")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    with pytest.raises(AssertionError, match="re-execute"):  # the program entry point does
        cli.entry()


def test_failed_reexec_warns_and_carries_on(monkeypatch, capsys):
    import os

    def refuse(*args, **kwargs):
        raise PermissionError("exec not allowed")

    monkeypatch.setattr(os, "execve", refuse)
    monkeypatch.setattr(allocator, "find_library", lambda name: "/lib/libtcmalloc.so")
    monkeypatch.delenv(allocator.MARK, raising=False)
    monkeypatch.delenv(allocator.ENV, raising=False)
    allocator.maybe_reexec(["tunelens", "train"])  # returns: the command goes on in this process
    assert "could not restart under /lib/libtcmalloc.so (exec not allowed)" in capsys.readouterr().err
