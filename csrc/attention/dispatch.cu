// Picks the attention instantiation for a dtype and head dim. setup.py defines
// DRAFTATTN_HAS_<DTYPE>_HD<DIM>=1 for each instantiation it compiled.
#include <cutlass/bfloat16.h>
#include <cutlass/float8.h>
#include <cutlass/half.h>

#include "draftattn/sparse_attn.h"
#include "tile_order.cuh"

#ifndef DRAFTATTN_HAS_BF16_HD64
#define DRAFTATTN_HAS_BF16_HD64 0
#endif
#ifndef DRAFTATTN_HAS_BF16_HD128
#define DRAFTATTN_HAS_BF16_HD128 0
#endif
#ifndef DRAFTATTN_HAS_FP16_HD64
#define DRAFTATTN_HAS_FP16_HD64 0
#endif
#ifndef DRAFTATTN_HAS_FP16_HD128
#define DRAFTATTN_HAS_FP16_HD128 0
#endif
#ifndef DRAFTATTN_HAS_FP8_HD64
#define DRAFTATTN_HAS_FP8_HD64 0
#endif
#ifndef DRAFTATTN_HAS_FP8_HD128
#define DRAFTATTN_HAS_FP8_HD128 0
#endif

namespace draftattn {
namespace sm90 {
template <class Element, int HeadDim>
cudaError_t launch_sparse_attn(const SparseAttnParams&, cudaStream_t);
}

namespace {
template <bool kCompiled, class Element, int HeadDim>
cudaError_t launch_if_compiled(const SparseAttnParams& params, cudaStream_t stream) {
  if constexpr (kCompiled) {
    return sm90::launch_sparse_attn<Element, HeadDim>(params, stream);
  } else {
    return cudaErrorNotSupported;
  }
}
}  // namespace

bool sparse_attn_sm90_available(DType dtype, int head_dim) {
  switch (dtype) {
    case DType::kBFloat16:
      return (head_dim == 64 && DRAFTATTN_HAS_BF16_HD64) || (head_dim == 128 && DRAFTATTN_HAS_BF16_HD128);
    case DType::kFloat16:
      return (head_dim == 64 && DRAFTATTN_HAS_FP16_HD64) || (head_dim == 128 && DRAFTATTN_HAS_FP16_HD128);
    case DType::kFloat8E4M3:
      return (head_dim == 64 && DRAFTATTN_HAS_FP8_HD64) || (head_dim == 128 && DRAFTATTN_HAS_FP8_HD128);
  }
  return false;
}

cudaError_t sparse_attn_sm90(const SparseAttnParams& params, DType dtype, cudaStream_t stream) {
  if (!sparse_attn_sm90_available(dtype, params.head_dim)) return cudaErrorNotSupported;
  const cudaError_t ordered = sm90::order_tiles_longest_first(params, stream);
  if (ordered != cudaSuccess) return ordered;
  const bool hd64 = params.head_dim == 64;
  switch (dtype) {
    case DType::kBFloat16:
      return hd64 ? launch_if_compiled<DRAFTATTN_HAS_BF16_HD64, cutlass::bfloat16_t, 64>(params, stream)
                  : launch_if_compiled<DRAFTATTN_HAS_BF16_HD128, cutlass::bfloat16_t, 128>(params, stream);
    case DType::kFloat16:
      return hd64 ? launch_if_compiled<DRAFTATTN_HAS_FP16_HD64, cutlass::half_t, 64>(params, stream)
                  : launch_if_compiled<DRAFTATTN_HAS_FP16_HD128, cutlass::half_t, 128>(params, stream);
    case DType::kFloat8E4M3:
      return hd64 ? launch_if_compiled<DRAFTATTN_HAS_FP8_HD64, cutlass::float_e4m3_t, 64>(params, stream)
                  : launch_if_compiled<DRAFTATTN_HAS_FP8_HD128, cutlass::float_e4m3_t, 128>(params, stream);
  }
  return cudaErrorNotSupported;
}

}  // namespace draftattn
