#!/usr/bin/env bash
# Verify a GPU machine end to end (what to run first on a GPU node, and what this repository
# runs whenever a GPU is available):
#
#   1. install the GPU environment (.venv-gpu: the `gpu` extra, RAPIDS 26.10 wheels, CUDA torch);
#   2. print `wsb-gpu --backend gpu info`;
#   3. run the GPU tests (`pytest -m gpu`);
#   4. benchmark every stage on the GPU at sizes that take seconds (`python -m benchmarks`);
#   5. run the GPU probe (FinBERT-shaped embedding throughput in fp32/bf16/fp16, the ridge
#      statistics on CuPy); steps 4 and 5 append dated sections to benchmarks/RESULTS.md.
#
#   make gpu-check                       # or: bash scripts/gpu_check.sh
#   srun --gres=gpu:1 --time=01:00:00 make gpu-check
#
# Environment: WSB_GPU_CHECK_VENV (default .venv-gpu), PYTHON (default python3).
# Exit status 0 only when every step passed; without a GPU it stops at once with one line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi finds none); run it on a GPU node, e.g. srun --gres=gpu:1 make gpu-check" >&2
    exit 1
fi

VENV="${WSB_GPU_CHECK_VENV:-.venv-gpu}"
PY="${PYTHON:-python3}"
say() { echo "gpu-check: $*" >&2; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || { say "cannot create $VENV"; exit 1; }
"$VENV/bin/python" -m pip install -q --upgrade pip
say "installing the GPU environment into $VENV (RAPIDS wheels are large: minutes)"
if ! "$VENV/bin/python" -m pip install -q -e '.[gpu,dev,demo]'; then
    say "the GPU stack did not install (above); with PyTorch + CuPy alone, the probe still runs:"
    say "  $VENV/bin/python -m pip install torch cupy-cuda12x -e '.[cpu,demo]' && $VENV/bin/python -m benchmarks.gpu_probe"
    exit 1
fi

status=0
step() { say "$1"; shift; "$@" || { say "FAILED: $*"; status=1; }; }
step "wsb-gpu info" "$VENV/bin/wsb-gpu" --backend gpu info
step "GPU tests" "$VENV/bin/python" -m pytest -m gpu -q -rs -p no:cacheprovider tests
step "GPU benchmark of every stage" "$VENV/bin/python" -m benchmarks --backend gpu --stage all --repeats 1 \
    --peers none --size ingest=300000,embed=20000,volatility=5000000,train=200000
step "GPU probe" "$VENV/bin/python" -m benchmarks.gpu_probe
if [ "$status" -eq 0 ]; then say "ok: every step passed; see benchmarks/RESULTS.md"; else say "some steps failed (above)"; fi
exit "$status"
