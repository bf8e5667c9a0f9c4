#!/usr/bin/env bash
# make gpu-check: what only a CUDA GPU can show, in one script of under 8 minutes on one GPU. It needs
# nothing beyond the working tree (tiny models and random weights in the shapes of SmolLM2-135M and
# Llama-3.1-8B are built there) and the machine's own Python with torch, transformers and accelerate;
# zstandard and gguf (and bitsandbytes, for nf4) may travel as wheels in .whl/, which it installs.
# On a machine without CUDA it says so in one line and exits 0. Figures go to $OUT (or gpu-check/).
set -uo pipefail
PY=${PY:-python3}
if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu-check: no CUDA GPU here, nothing to check"
  exit 0
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
out=${OUT:-gpu-check}
mkdir -p "$out"
failed=()
step() {  # step NAME COMMAND...: run it, time it, remember a failure and go on
  local name=$1 began=$SECONDS
  shift
  echo "== $name"
  "$@" || failed+=("$name")
  echo "   ($((SECONDS - began)) s)"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "fast suite on CUDA" env MEMTOK_TEST_DEVICE=cuda $PY -m pytest -q -m "not slow" -n 4 -p no:cacheprovider
for dtype in float32 bfloat16; do
  step "batched vs alone, SmolLM2 shape, $dtype" $PY bench/batched_vs_single.py --device cuda --random-weights \
    --model-dtype $dtype --json "$out/batched-vs-single-smollm2-$dtype.json"
done
step "batched vs alone, Llama-3.1-8B shape, bfloat16" $PY bench/batched_vs_single.py --device cuda --random-weights \
  --shape llama-3.1-8b --model-dtype bfloat16 --batch-sizes 1,2,8,32 --tokens 16 \
  --json "$out/batched-vs-single-llama8b-bfloat16.json"
step "round trips: bfloat16, --device auto, a split model" $PY bench/gpu_round_trips.py --json "$out/round-trips.json"
kinds=float32,bfloat16
$PY -c "import bitsandbytes" 2>/dev/null && kinds=$kinds,nf4 || echo "   (no bitsandbytes here: nf4 is not checked)"
step "input gradients ($kinds) against a finite difference" $PY bench/input_gradients.py --device cuda \
  --random-weights --kinds $kinds --json "$out/input-gradients-cuda.json"
if ((${#failed[@]})); then
  echo "gpu-check: failed: ${failed[*]}"
  exit 1
fi
echo "gpu-check: all passed; figures in $out/"
