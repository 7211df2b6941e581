"""llama-cpp-python in tests: only where it is installed and built for this CPU."""

from __future__ import annotations

import pytest


def skip_without_usable_llama_cpp() -> None:
    """Skip unless llama-cpp-python is installed and built for this CPU (checked in a child process:
    importing a build for another CPU kind here would kill the test run with SIGILL)."""
    from tunelens.generate.cpu import llama_cpp_status

    status = llama_cpp_status()
    if not status.usable:
        pytest.skip(status.reason)


def requires_usable_llama_cpp():
    """The same check as a skip marker, with the status's own reason (not installed, or built for
    instructions this CPU lacks)."""
    from tunelens.generate.cpu import llama_cpp_status

    status = llama_cpp_status()
    return pytest.mark.skipif(not status.usable, reason=status.reason)
