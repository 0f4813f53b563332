// Plain (torch-free) interface of the fused layout + pooling + e4m3 quantisation pass behind
// draftattn::to_regions_and_quantize_fp8 (docs/CONTRACT.md). Its outputs are bit-identical to
// quantize_fp8 applied to to_regions_and_pool's region-major q, k, v, and its region means to
// to_regions_and_pool's.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "draftattn/drafting.h"

namespace draftattn {

struct RegionsFp8Args {
  TokenTensor q, k, v;  // (batch, model_tokens, heads, head_dim) in model order, fp16 or bf16
  uint8_t* q_fp8;       // e4m3 (batch, num_blocks*128, heads, head_dim), padded region-major
  uint8_t* k_fp8;       // e4m3 (batch, num_blocks*128, heads, head_dim), padded region-major
  uint8_t* v_t_fp8;     // e4m3 (batch, heads, head_dim, num_blocks*128), fp8 key order
  float* q_descale;     // (batch, heads, num_blocks)
  float* k_descale;     // (batch, heads, num_blocks)
  float* v_descale;     // (batch, heads)
  float* q_pooled;      // (batch, heads, num_regions, head_dim)
  float* k_pooled;      // (batch, heads, num_regions, head_dim)
  uint32_t* v_amax;     // workspace (batch*heads): |v| maxima as float bits
  int batch, heads, head_dim;
  DType dtype;
  RegionLayout layout;
};

// Whether the fused kernels take these sizes (others: use the reference). Grid: (heads,
// num_blocks, batch x 3); y and z are limited to 65535; row offsets are 32-bit.
inline bool regions_fp8_kernel_fits(int64_t batch, int64_t heads, int64_t head_dim, int64_t model_tokens,
                                    int64_t num_blocks) {
  return (head_dim == 64 || head_dim == 128) && batch > 0 && heads > 0 && num_blocks <= 65535 &&
         batch * 3 <= 65535 && model_tokens < INT32_MAX && num_blocks * kBlockSize < INT32_MAX;
}

// Zeroes v_amax on the stream, then two launches (q, k tiles and v maxima; then V^T).
cudaError_t to_regions_quantize_fp8(const RegionsFp8Args& args, cudaStream_t stream);

}  // namespace draftattn
