#!/usr/bin/env bash
# One complete check on a GPU machine: install the CUTLASS wheel carried in .whl/, build the
# extension in place, show the kernels' resource usage and tensor-core instructions, run the
# tests, run the benchmarks. Full logs go to $OUT; a short summary is printed last.
#
#   bench/gpu_check.sh                 build, tests, benchmarks (add "sanitize" or "cpp" to STAGES for more)
#   STAGES="build tests" bench/gpu_check.sh
#   DRAFTATTN_ATTN_KERNELS=bf16_hd128 bench/gpu_check.sh   (faster development build)
#   PYTEST_ARGS="-k model_shapes" BENCH_ARGS="--shape wan14b-720p" bench/gpu_check.sh
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

if [[ $STAGES == *sanitize* ]]; then
  # memcheck over one small bf16 and one fp8 call with partial blocks and empty rows.
  PYTHONPATH=. compute-sanitizer --tool memcheck --error-exitcode 1 python3 bench/sanitize_case.py >"$OUT/sanitize.log" 2>&1
  summary+=("compute-sanitizer memcheck: exit $? ($(grep -c 'Invalid' "$OUT/sanitize.log") invalid accesses)")
fi

if [[ $STAGES == *bench* ]]; then
  python3 -m draftattn_cuda.bench ${BENCH_ARGS:-} --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | tail -60
  if [[ -f bench/bench_drafting.py ]]; then
    PYTHONPATH=. python3 bench/bench_drafting.py --json "$OUT/bench_drafting.json" 2>&1 | tee "$OUT/bench_drafting.log" | tail -30
  fi
fi

# C++ microbenchmarks (CMake, no torch): STAGES=cpp. Verifies small shapes against the fp32
# host reference, then times Wan-14B 720p. Output goes to $OUT/cpp_bench.log.
if [[ $STAGES == *cpp* ]]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | tail -1
  fi
  cpp_dir=/tmp/draftattn-cmake cpp_bin=/tmp/draftattn-cmake/bench/cpp cpp_log="$OUT/cpp_bench.log"
  if cmake -S . -B "$cpp_dir" $(command -v ninja >/dev/null && echo -G Ninja) -DCMAKE_BUILD_TYPE=Release \
       ${DRAFTATTN_ATTN_KERNELS:+-DDRAFTATTN_ATTN_KERNELS=$DRAFTATTN_ATTN_KERNELS} >"$OUT/cpp_build.log" 2>&1 &&
     cmake --build "$cpp_dir" -j16 >>"$OUT/cpp_build.log" 2>&1; then
    cpp_cases=(
      "sparse_attn_bench --verify --batch 1 --heads 4 --tokens 1000 --head-dim 128 --density 1,0.3 --iters 3"
      "sparse_attn_bench --verify --batch 1 --heads 4 --tokens 1000 --head-dim 128 --density 1,0.3 --rows uneven --partial --iters 3")
    [[ -z ${DRAFTATTN_ATTN_KERNELS:-} ]] && cpp_cases+=(  # fp16 hd64 exists only in a full build
      "sparse_attn_bench --verify --batch 2 --heads 3 --tokens 1000 --head-dim 64 --dtype fp16 --density 1,0.3 --rows uneven --partial --iters 3")
    cpp_cases+=(
      "sparse_attn_bench --batch 1 --heads 40 --tokens 75600 --head-dim 128 --density 1,0.5,0.25,0.1"
      "drafting_bench --frames 21 --height 45 --width 80 --heads 40 --head-dim 128")
    cpp_failed=0
    : >"$cpp_log"
    for args in "${cpp_cases[@]}"; do
      echo "\$ $args" >>"$cpp_log"
      "$cpp_bin"/$args 2>&1 | tee -a "$cpp_log"
      rc=${PIPESTATUS[0]}
      if ((rc != 0)); then cpp_failed=$((cpp_failed + 1)); echo "(exit $rc)" >>"$cpp_log"; fi
    done
    summary+=("cpp: $(grep -c ' PASS ' "$cpp_log") verify PASS, $(grep -c ' FAIL ' "$cpp_log") FAIL, $cpp_failed failed runs (log: $cpp_log)")
    while IFS= read -r line; do summary+=("  $line"); done < <(grep -E '^(sparse_attn|drafting) |^error|failed:' "$cpp_log" | tail -16 | sed 's/ card="[^"]*"//')
  else
    grep -E "error|Error" "$OUT/cpp_build.log" | head -20
    summary+=("cpp: CMake build FAILED (log: $OUT/cpp_build.log)")
  fi
fi

echo "==== summary ($(head -1 "$OUT/gpu.txt"))"
printf '%s\n' "${summary[@]}"
