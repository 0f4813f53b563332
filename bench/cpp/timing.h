// Median kernel time over CUDA events. Each timed launch gets its own event pair, so the
// median drops the odd slow launch (clock ramp, another process) instead of averaging it in.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "common.h"

namespace bench {

// Runs launch(0 .. warmup-1) untimed, then launch(warmup .. warmup+iters-1) timed; `launch`
// takes the call's index (so a call can use state of its own) and returns its launch status.
template <class Launch>
float median_ms(cudaStream_t stream, int warmup, int iters, Launch&& launch) {
  for (int i = 0; i < warmup; ++i) CUDA_CHECK(launch(i));
  std::vector<cudaEvent_t> start(iters), stop(iters);
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventCreate(&start[i]));
    CUDA_CHECK(cudaEventCreate(&stop[i]));
  }
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventRecord(start[i], stream));
    CUDA_CHECK(launch(warmup + i));
    CUDA_CHECK(cudaEventRecord(stop[i], stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventElapsedTime(&ms[i], start[i], stop[i]));
    CUDA_CHECK(cudaEventDestroy(start[i]));
    CUDA_CHECK(cudaEventDestroy(stop[i]));
  }
  std::sort(ms.begin(), ms.end());
  return iters % 2 == 1 ? ms[iters / 2] : 0.5f * (ms[iters / 2 - 1] + ms[iters / 2]);
}

}  // namespace bench
