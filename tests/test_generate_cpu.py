"""Which llama.cpp build suits a CPU, and refusing one built for another CPU kind."""

from __future__ import annotations

import importlib.util

import pytest

import tunelens.generate.backends as b
import tunelens.generate.cpu as cpu
from tunelens.errors import ConfigError

# The flags lines of the CPU kinds this project runs on (trimmed to the SIMD-relevant ones).
ZEN5 = ("fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl "
        "avx512_bf16 avx512vbmi avx512_vnni avx512_bitalg")
ZEN3 = "fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 vaes"
SKYLAKE_X = "fpu sse sse2 pni ssse3 fma avx f16c avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl"
OLD_X86 = "fpu sse sse2 pni ssse3 sse4_2 avx"

# What llama_print_system_info() reports for the two builds `make llamacpp` makes.
INFO_AVX512 = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
               "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")
INFO_AVX2 = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
             "OPENMP = 1 | REPACK = 1 | ")


def flags(line: str) -> frozenset[str]:
    return cpu.cpu_flags(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {line}\n\nprocessor\t: 1\n")


def test_cpu_flags_are_read_from_cpuinfo():
    assert {"avx512_vnni", "avx2", "pni"} <= flags(ZEN5)
    assert "avx512f" not in flags(ZEN3)
    assert cpu.cpu_flags("processor : 0\n") == frozenset()


@pytest.mark.parametrize("line, machine, variant", [
    (ZEN5, "x86_64", "avx512"),
    (ZEN3, "x86_64", "avx2"),
    (SKYLAKE_X, "x86_64", "avx2"),  # AVX-512 without VNNI/BF16/VBMI: the avx512 build needs them
    (OLD_X86, "x86_64", "generic"),
    (ZEN5, "aarch64", "generic"),
])
def test_host_variant(line, machine, variant):
    assert cpu.host_variant(flags(line), machine) == variant
    needs, args = cpu.VARIANTS[variant]
    assert needs <= flags(line) or variant == "generic"
    assert "-DGGML_NATIVE=OFF" in args  # never -march=native: the wheel outlives the host it was built on


def test_each_variant_builds_only_what_its_cpus_have():
    """The CMake flags of a variant compile features the variant's required CPU flags cover."""
    assert "-DGGML_AVX512=OFF" in cpu.VARIANTS["avx2"][1]
    for variant, feature_info in (("avx512", INFO_AVX512), ("avx2", INFO_AVX2)):
        needs, _ = cpu.VARIANTS[variant]
        assert cpu.missing_flags(feature_info, needs | {"pni", "ssse3", "bmi2"}) == []


def test_missing_flags_names_what_this_cpu_lacks():
    assert cpu.missing_flags(INFO_AVX512, flags(ZEN5)) == []
    missing = cpu.missing_flags(INFO_AVX512, flags(ZEN3))
    assert {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512vbmi"} <= set(missing)
    assert len(missing) == len(set(missing))
    assert cpu.missing_flags(INFO_AVX2, flags(ZEN3)) == []
    assert cpu.missing_flags(INFO_AVX2, flags(OLD_X86)) == ["avx2", "bmi2", "f16c", "fma"]


def test_probe_result_decides_usability():
    ok = cpu._status_from_probe(0, INFO_AVX512, "", flags(ZEN5), "x86_64")
    assert ok.usable and ok.has_avx512 and "AVX512_VNNI" in ok.reason
    wrong_kind = cpu._status_from_probe(0, INFO_AVX512, "", flags(ZEN3), "x86_64")
    assert not wrong_kind.usable and not wrong_kind.has_avx512
    assert "avx512f" in wrong_kind.reason and "make llamacpp" in wrong_kind.reason
    avx2 = cpu._status_from_probe(0, INFO_AVX2, "", flags(ZEN3), "x86_64")
    assert avx2.usable and not avx2.has_avx512
    killed = cpu._status_from_probe(-4, "", "", flags(ZEN3), "x86_64")
    assert not killed.usable and "SIGILL" in killed.reason
    broken = cpu._status_from_probe(1, "", "Traceback ...\nOSError: libggml.so: cannot open shared object file\n")
    assert not broken.usable and "libggml.so" in broken.reason


def test_a_child_killed_by_an_illegal_instruction_is_reported_not_fatal(monkeypatch):
    """The probe runs in a child: a build for another CPU kind kills the child, never this process."""
    monkeypatch.setattr(cpu, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    status = cpu._status_from_probe(*cpu._probe())
    assert not status.usable
    assert "killed by SIGILL" in status.reason


def test_a_probe_that_cannot_run_says_why(monkeypatch):
    def hang(*args, **kwargs):
        raise cpu.subprocess.TimeoutExpired(cmd="python", timeout=120)

    monkeypatch.setattr(cpu.subprocess, "run", hang)
    status = cpu._status_from_probe(*cpu._probe())
    assert not status.usable and "the probe could not run" in status.reason and "timed out" in status.reason


def test_main_prints_the_variant_and_its_cmake_args(capsys, monkeypatch):
    monkeypatch.setattr(cpu, "host_variant", lambda: "avx2")
    cpu.main([])
    assert capsys.readouterr().out.strip() == "avx2"
    cpu.main(["--cmake-args"])
    assert capsys.readouterr().out.strip() == cpu.VARIANTS["avx2"][1]


def _status(monkeypatch, status: cpu.LlamaCppStatus) -> None:
    monkeypatch.setattr(cpu, "llama_cpp_status", lambda: status)


def test_quant_auto_is_f16_with_avx512_else_q8_0(monkeypatch):
    _status(monkeypatch, cpu._status_from_probe(0, INFO_AVX512, "", flags(ZEN5), "x86_64"))
    assert b.resolve_quant("auto")[0] == "f16"
    assert b.resolve_quant("q8_0") == ("q8_0", None)
    _status(monkeypatch, cpu._status_from_probe(0, INFO_AVX2, "", flags(ZEN3), "x86_64"))
    quant, note = b.resolve_quant("auto")
    assert quant == "q8_0" and "without AVX-512" in note
    with pytest.raises(ConfigError, match="quant must be one of"):
        b.resolve_quant("q5")


def test_a_build_for_another_cpu_kind_is_refused_with_its_reason(monkeypatch):
    bad = cpu._status_from_probe(0, INFO_AVX512, "", flags(ZEN3), "x86_64")
    _status(monkeypatch, bad)
    monkeypatch.setattr(b, "vllm_available", lambda: False)
    assert not b.llama_cpp_available()
    chosen, note = b.choose_backend("auto")
    assert chosen == "hf" and "avx512f" in note and "make llamacpp" in note
    with pytest.raises(ConfigError, match="instructions this CPU lacks"):
        b._import_llama_cpp()
    with pytest.raises(ConfigError, match="instructions this CPU lacks"):
        b.load_backend("tiny-random", "llamacpp")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_the_installed_build_runs_on_this_cpu():
    """`make llamacpp` installs the build for this host's kind, and the probe agrees."""
    status = cpu.llama_cpp_status()
    assert status.usable, status.reason
    assert cpu.missing_flags(status.system_info, cpu.cpu_flags()) == []


def test_the_build_is_part_of_the_generation_cache_key():
    """Answers of builds for different CPU kinds are never mixed (their q8_0 greedy text differs)."""
    avx512 = cpu._status_from_probe(0, "version=0.3.36\n" + INFO_AVX512, "", flags(ZEN5), "x86_64")
    avx2 = cpu._status_from_probe(0, "version=0.3.36\n" + INFO_AVX2, "", flags(ZEN5), "x86_64")
    assert avx512.build == ("llama-cpp-python 0.3.36 AVX+AVX2+AVX512+AVX512_BF16+AVX512_VBMI+AVX512_VNNI+BMI2+F16C"
                            "+FMA+SSE3+SSSE3")
    assert avx2.build == "llama-cpp-python 0.3.36 AVX+AVX2+BMI2+F16C+FMA+SSE3+SSSE3"
    assert cpu._status_from_probe(0, INFO_AVX512, "", flags(ZEN3), "x86_64").build is None  # not usable here
    keys = [b.BackendInfo("llamacpp", "m", quant="q8_0", gguf_sha256="ab", build=s.build).cache_key()
            for s in (avx512, avx2)]
    assert keys[0] != keys[1] and keys[0]["build"] == avx512.build
    # hf (and vllm) keep their key of old, so existing caches stay valid
    assert b.BackendInfo("hf", "m", quant="fp32").cache_key() == {"backend": "hf", "quant": "fp32", "gguf_sha256": None}
