// Random inputs generated on the device (a 774 MB tensor filled from the host would dominate
// the run) and conversions to fp32 for host-side checks.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "draftattn/sparse_attn.h"

namespace bench {

// dst[i] = uniform in [lo, hi), a pure function of (seed, i): the same seed gives the same
// tensor on any card and grid.
cudaError_t fill_uniform(void* dst, draftattn::DType dtype, int64_t count, float lo, float hi, uint64_t seed,
                         cudaStream_t stream);
cudaError_t fill_uniform(float* dst, int64_t count, float lo, float hi, uint64_t seed, cudaStream_t stream);

// dst[i] = float(src[i]).
cudaError_t to_float(const void* src, draftattn::DType dtype, int64_t count, float* dst, cudaStream_t stream);

}  // namespace bench
