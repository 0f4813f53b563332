#!/usr/bin/env bash
# One complete check on a GPU machine: install the CUTLASS wheel carried in .whl/, build the
# extension in place, show the kernels' resource usage and tensor-core instructions, run the
# tests, run the benchmarks. Full logs go to $OUT; a short summary is printed last.
#
#   bench/gpu_check.sh                 everything
#   STAGES="build tests" bench/gpu_check.sh
#   DRAFTATTN_ATTN_KERNELS=bf16_hd128 bench/gpu_check.sh   (faster development build)
#   PYTEST_ARGS="-k model_shapes" BENCH_ARGS="--shape wan14b_720p" bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/draftattn_gpu_check}
STAGES=${STAGES:-build tests bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} DRAFTATTN_REQUIRE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
# The GPU machine's default CXX (/opt/gcc/bin/g++) links libstdc++ statically into the
# extension, whose stream code then crashes on the first formatted error message; the
# system compiler links it dynamically like torch does.
if [[ -x /usr/bin/g++ ]]; then export CXX=/usr/bin/g++ CC=/usr/bin/gcc; fi
summary=()

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

if [[ $STAGES == *build* ]]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | tail -1
  fi
  start=$(date +%s)
  if ! python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1; then
    grep -E "error|Error" "$OUT/build.log" | head -40
    echo "BUILD FAILED (log: $OUT/build.log)"
    exit 1
  fi
  summary+=("build: ok in $(( $(date +%s) - start )) s")
  grep -A2 "Compiling entry function" "$OUT/build.log" | grep -E "entry|registers|spill" \
    | sed -E 's/.*entry function .(_Z[^ ]*). .*/\1/' | paste - - - | cut -c1-220 | tee "$OUT/resources.txt"
  so=$(ls draftattn_cuda/_C*.so)
  cuobjdump --dump-sass "$so" >"$OUT/sass.txt" 2>/dev/null
  summary+=("sass: $(grep -c HGMMA "$OUT/sass.txt") HGMMA, $(grep -c QGMMA "$OUT/sass.txt") QGMMA, $(grep -cE '\bHMMA' "$OUT/sass.txt") HMMA, $(grep -c UTMALDG "$OUT/sass.txt") UTMALDG")
fi

if [[ $STAGES == *tests* ]]; then
  python3 -m pytest -q -rs tests ${PYTEST_ARGS:-} 2>&1 | tee "$OUT/tests.log" | tail -40
  summary+=("tests: $(tail -1 "$OUT/tests.log")")
fi

if [[ $STAGES == *bench* ]]; then
  python3 -m draftattn_cuda.bench ${BENCH_ARGS:-} --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | tail -60
  if [[ -f bench/bench_drafting.py ]]; then
    PYTHONPATH=. python3 bench/bench_drafting.py --json "$OUT/bench_drafting.json" 2>&1 | tee "$OUT/bench_drafting.log" | tail -30
  fi
fi

echo "==== summary ($(head -1 "$OUT/gpu.txt"))"
printf '%s\n' "${summary[@]}"
