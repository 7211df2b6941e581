"""Run the heavy commands under tcmalloc when it is installed.

glibc malloc hands large freed blocks back to the kernel and page-faults them in again on the
next step; PyTorch on CPU allocates fresh large activations every step, so that churn costs
real time. Measured on the 2-core dev VM (LoRA on SmolLM2-135M, seven A/B runs, docs/benchmarks.md):
tcmalloc a median 1.16x the supervised tokens/s of glibc (0.87x to 1.25x), and steadier step
times; jemalloc 1.01x. The allocator must be preloaded
before the interpreter starts, so ``tunelens train|run|...`` re-executes itself once with
``LD_PRELOAD`` set (the process keeps its PID: signals and exit codes are unchanged).

``TUNELENS_ALLOCATOR``: ``auto`` (default: tcmalloc if found), ``tcmalloc``, ``jemalloc`` or
``system`` (no preload).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "TUNELENS_ALLOCATOR"
MARK = "TUNELENS_ALLOCATOR_LOADED"  # set on re-exec, so it happens once
LIBRARIES = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
HEAVY_COMMANDS = {"train", "run", "eval", "explain", "explain-focus", "explain-rationale", "serve"}


def find_library(name: str) -> str | None:
    dirs = [str(Path(sys.prefix) / "lib"), *SEARCH_DIRS]
    for lib in LIBRARIES.get(name, ()):
        for d in dirs:
            path = Path(d) / lib
            if path.is_file():
                return str(path)
    return None


def active_allocator() -> str:
    """What this process runs with: the preloaded library's path, or 'system'."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name, libs in LIBRARIES.items():
        if any(lib.split(".so")[0] in preload for lib in libs):
            return name
    return "system"


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv[1:] if not a.startswith("-")), None)


def plan_reexec(argv: list[str], environ: dict[str, str], platform: str = sys.platform) -> dict[str, str] | None:
    """The environment to re-execute with, or None to carry on as is."""
    choice = environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "system", *LIBRARIES):
        raise SystemExit(f"error: {ENV}={choice!r}: use auto, tcmalloc, jemalloc or system")
    if choice == "system" or environ.get(MARK) or not platform.startswith("linux"):
        return None
    if _command(argv) not in HEAVY_COMMANDS or "--help" in argv:
        return None
    name = "tcmalloc" if choice == "auto" else choice
    lib = find_library(name)
    if lib is None:
        if choice != "auto":
            print(f"warning: {ENV}={choice} but no {name} library was found; using the system allocator",
                  file=sys.stderr)
        return None
    if any(lib_name.split(".so")[0] in environ.get("LD_PRELOAD", "") for lib_name in LIBRARIES[name]):
        return None
    preload = ":".join(p for p in (lib, environ.get("LD_PRELOAD", "")) if p)
    return {**environ, "LD_PRELOAD": preload, MARK: lib}


def maybe_reexec(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    env = plan_reexec(argv, dict(os.environ))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "tunelens", *argv[1:]], env)
    except OSError as exc:  # cannot exec (unusual sandbox): say so, carry on with the system allocator
        print(f"warning: could not restart under {env[MARK]} ({exc}); using the system allocator", file=sys.stderr)
