"""Which llama.cpp build suits this CPU, and whether the installed one can run here.

llama-cpp-python is a source package: its wheel is compiled for the instruction sets it was
built with. This project's machines alternate between CPU kinds (AVX-512 with BF16/VNNI, and
AVX2-only AMD Zen 3), and one virtual environment or pip wheel cache can outlive a change of
host. Two builds are made, each for the CPUs that can run it:

- ``avx512``: AVX-512 F/CD/VL/DQ/BW with VBMI, VNNI and BF16 (Zen 4/5, Sapphire Rapids and later).
  On the 2-core AMD EPYC (Zen 5) host it decodes the eval workload 1.12-1.14x faster in q8_0 and
  1.24-1.40x faster in f16 than the AVX2 build (``benchmarks/llamacpp_builds.py``, docs/benchmarks.md,
  2026-12-06, third session);
- ``avx2``: AVX2/FMA/F16C, what every x86-64 host of this project has (the portable build);
- ``generic``: anything else (no x86 SIMD flags: the compiler's defaults).

Upstream's answer (``GGML_CPU_ALL_VARIANTS`` with ``GGML_BACKEND_DL``) builds a dozen variants and
loads the best at run time, but llama-cpp-python's packaging installs only the plain ``ggml-cpu``
library, so the variants would not reach the wheel; a build per CPU kind, chosen by ``make
llamacpp`` and checked here before use, gives the same safety.

``python -m tunelens.generate.cpu`` prints the variant of this host and its CMake flags
(``make llamacpp`` uses it).

Before the llamacpp backend is used, :func:`llama_cpp_status` imports llama-cpp-python in a child
process and compares the instruction sets it was compiled for with this CPU's: an AVX-512 build
on an AVX2-only host would die with SIGILL and take the whole run with it; instead ``auto`` falls
back to ``hf`` and ``--backend llamacpp`` says what to rebuild.
"""

from __future__ import annotations

import functools
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec

_BASE_ARGS = "-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF"
_AVX2_ARGS = "-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

# variant: (the host's /proc/cpuinfo flags it needs, its CMake arguments), best first
VARIANTS: dict[str, tuple[frozenset[str], str]] = {
    "avx512": (
        frozenset({"avx", "avx2", "fma", "f16c", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                   "avx512vbmi", "avx512_vnni", "avx512_bf16"}),
        f"{_BASE_ARGS} {_AVX2_ARGS} -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON",
    ),
    "avx2": (frozenset({"avx", "avx2", "fma", "f16c"}), f"{_BASE_ARGS} {_AVX2_ARGS} -DGGML_AVX512=OFF"),
    "generic": (frozenset(), _BASE_ARGS),
}

# llama.cpp's system-info feature names -> the /proc/cpuinfo flags the compiled code needs
# (ggml's GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw).
_FEATURE_FLAGS: dict[str, tuple[str, ...]] = {
    "SSE3": ("pni",), "SSSE3": ("ssse3",), "AVX": ("avx",), "AVX2": ("avx2",), "F16C": ("f16c",), "FMA": ("fma",),
    "BMI2": ("bmi2",), "AVX_VNNI": ("avx_vnni",),
    "AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "AVX512_VBMI": ("avx512vbmi",), "AVX512_VNNI": ("avx512_vnni",), "AVX512_BF16": ("avx512_bf16",),
    "AMX_INT8": ("amx_int8",), "AMX_BF16": ("amx_bf16",),
}


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def host_variant(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """The best llama.cpp build this CPU can run."""
    machine = machine or platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return "generic"
    flags = cpu_flags() if flags is None else flags
    for name, (needs, _) in VARIANTS.items():
        if needs <= flags:
            return name
    return "generic"


def compiled_features(system_info: str) -> frozenset[str]:
    """The features a llama.cpp build reports as compiled in (``llama_print_system_info``:
    ``CPU : SSE3 = 1 | AVX = 1 | ...``)."""
    return frozenset(m.group(1) for m in re.finditer(r"\b([A-Z][A-Z0-9_]*) = 1\b", system_info))


def missing_flags(system_info: str, flags: frozenset[str]) -> list[str]:
    """The CPU flags a build's compiled features need that this CPU lacks (empty: it can run here)."""
    missing: list[str] = []
    for feature in sorted(compiled_features(system_info)):
        missing += [f for f in _FEATURE_FLAGS.get(feature, ()) if f not in flags and f not in missing]
    return missing


@dataclass(frozen=True)
class LlamaCppStatus:
    usable: bool
    reason: str  # why not, or what it was built with
    system_info: str = ""  # the probe's output: "version=X" and llama_print_system_info()

    @property
    def has_avx512(self) -> bool:
        return self.usable and "AVX512" in compiled_features(self.system_info)

    @property
    def build(self) -> str | None:
        """The package version and the instruction sets compiled in, e.g. ``llama-cpp-python 0.3.36
        AVX+AVX2+...``: builds for different CPU kinds round differently (greedy q8_0 text agreed on 36%
        of prompts between the avx2 and avx512 builds), so generation caches key on it."""
        if not self.usable:
            return None
        version = re.search(r"^version=(\S+)", self.system_info, re.M)
        simd = sorted(f for f in compiled_features(self.system_info) if f in _FEATURE_FLAGS)
        return f"llama-cpp-python {version.group(1) if version else '?'} {'+'.join(simd) or 'no-simd'}"


_PROBE = ("import llama_cpp, sys; sys.stdout.write('version=' + str(getattr(llama_cpp, '__version__', '?')) + '\\n' "
          "+ llama_cpp.llama_print_system_info().decode('utf-8', 'replace'))")


@functools.cache
def llama_cpp_status() -> LlamaCppStatus:
    """Whether llama-cpp-python is installed and built for instruction sets this CPU has.

    It is imported in a child process (about a second, once per process): a build for a CPU this
    one is not would kill the caller with SIGILL on first use."""
    if find_spec("llama_cpp") is None:
        return LlamaCppStatus(False, "llama-cpp-python is not installed; `make llamacpp` (part of `make demo` and `make test`) builds it when it can")
    return _status_from_probe(*_probe())


def _probe(env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of importing llama-cpp-python in a child (``env``: its environment)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:  # reported as a failed import, with the reason
        return 1, "", f"the probe could not run ({exc})"
    return done.returncode, done.stdout, done.stderr


def _status_from_probe(rc: int, out: str, err: str, flags: frozenset[str] | None = None,
                       machine: str | None = None) -> LlamaCppStatus:
    rebuild = "rebuild it for this CPU with `make llamacpp` (it detects the CPU kind)"
    if rc != 0:
        if rc < 0:
            import signal

            try:
                why = f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                why = f"killed by signal {-rc}"
        else:
            lines = [line for line in err.strip().splitlines() if line.strip()]
            why = f"exit {rc}: {lines[-1] if lines else 'no message'}"
        return LlamaCppStatus(False, f"llama-cpp-python cannot be loaded here ({why}); {rebuild}")
    machine = machine or platform.machine()
    if machine in ("x86_64", "AMD64"):
        missing = missing_flags(out, cpu_flags() if flags is None else flags)
        if missing:
            return LlamaCppStatus(False, f"llama-cpp-python was built for instructions this CPU lacks "
                                         f"({', '.join(missing)}); {rebuild}", out)
    built = sorted(compiled_features(out))
    return LlamaCppStatus(True, f"llama.cpp built with {', '.join(built) or 'no SIMD features'}", out)


def main(argv: list[str] | None = None) -> int:
    """``python -m tunelens.generate.cpu [--cmake-args]``: this host's llama.cpp variant, or its CMake flags."""
    args = sys.argv[1:] if argv is None else argv
    variant = host_variant()
    print(VARIANTS[variant][1] if "--cmake-args" in args else variant)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
