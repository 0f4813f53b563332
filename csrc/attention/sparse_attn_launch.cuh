// Host side of one attention instantiation: TMA descriptors, shared memory, grid.
#pragma once

#include <cuda_runtime.h>

#include "draftattn/sparse_attn.h"
#include "kernel_params.cuh"
#include "kernel_traits.cuh"
#include "sparse_attn_kernel.cuh"

namespace draftattn::sm90 {

template <class Element, int HeadDim>
cudaError_t launch_sparse_attn(const SparseAttnParams& a, cudaStream_t stream) {
  using Traits = AttentionTraits<Element, HeadDim>;
  using Dim = typename Traits::Dim;
  auto token_major = [&](const void* ptr, int64_t batch_stride, int64_t token_stride, int64_t head_stride) {
    return make_tensor(make_gmem_ptr(static_cast<const Element*>(ptr)),
                       typename Traits::GmemLayout(make_shape(a.tokens, Dim{}, a.heads, a.batch),
                                                   make_stride(token_stride, _1{}, head_stride, batch_stride)));
  };
  // fp8 V^T spans whole blocks: its key order permutes tokens inside groups of 32, so a
  // tail cut at `tokens` could drop valid keys.
  auto v_tensor = [&] {
    if constexpr (Traits::kFp8) {
      return make_tensor(make_gmem_ptr(static_cast<const Element*>(a.v)),
                         typename Traits::GmemLayoutVt(make_shape(Dim{}, a.num_blocks * Traits::kBlockN, a.heads, a.batch),
                                                       make_stride(a.v_dim_stride, _1{}, a.v_head_stride, a.v_batch_stride)));
    } else {
      return token_major(a.v, a.v_batch_stride, a.v_token_stride, a.v_head_stride);
    }
  };
  auto v_box = [] {
    if constexpr (Traits::kFp8) {
      return Shape<Dim, typename Traits::BlockN>{};
    } else {
      return Shape<typename Traits::BlockN, Dim>{};
    }
  };

  KernelParams<Traits> p{
      make_tma_copy(SM90_TMA_LOAD{}, token_major(a.q, a.q_batch_stride, a.q_token_stride, a.q_head_stride),
                    typename Traits::SmemLayoutQ{}, Shape<typename Traits::BlockM, Dim>{}, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, token_major(a.k, a.k_batch_stride, a.k_token_stride, a.k_head_stride),
                    take<0, 2>(typename Traits::SmemLayoutKSlots{}), Shape<typename Traits::BlockN, Dim>{}, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, v_tensor(), take<0, 2>(typename Traits::SmemLayoutVSlots{}), v_box(), _1{}),
      a,
      a.num_blocks * a.heads * a.batch,
      a.workspace,
      a.workspace + 1,
      a.scale * 1.4426950408889634f,
  };

  auto* kernel = &sparse_attn_kernel<Traits>;
  constexpr int smem_bytes = sizeof(typename Traits::SharedStorage);
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (status != cudaSuccess) return status;
  const int ctas = p.num_tiles < a.num_sms ? p.num_tiles : a.num_sms;  // persistent: one CTA per SM
  kernel<<<ctas, Traits::kThreads, smem_bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace draftattn::sm90

// One explicit instantiation per translation unit keeps compile times parallel.
#define DRAFTATTN_INSTANTIATE_SPARSE_ATTN(Element, HeadDim)                                   \
  template cudaError_t draftattn::sm90::launch_sparse_attn<Element, HeadDim>(                  \
      const draftattn::SparseAttnParams&, cudaStream_t);
