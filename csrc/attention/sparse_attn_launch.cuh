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
  using Layout = typename Traits::GmemLayout;
  auto gmem = [&](const void* ptr, int64_t batch_stride, int64_t token_stride, int64_t head_stride) {
    return make_tensor(make_gmem_ptr(static_cast<const Element*>(ptr)),
                       Layout(make_shape(a.tokens, typename Traits::Dim{}, a.heads, a.batch),
                              make_stride(token_stride, _1{}, head_stride, batch_stride)));
  };
  using BlockM = typename Traits::BlockM;
  using Dim = typename Traits::Dim;

  KernelParams<Traits> p{
      make_tma_copy(SM90_TMA_LOAD{}, gmem(a.q, a.q_batch_stride, a.q_token_stride, a.q_head_stride),
                    typename Traits::SmemLayoutQ{}, Shape<BlockM, Dim>{}, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, gmem(a.k, a.k_batch_stride, a.k_token_stride, a.k_head_stride),
                    take<0, 2>(typename Traits::SmemLayoutKV{}), Shape<BlockM, Dim>{}, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, gmem(a.v, a.v_batch_stride, a.v_token_stride, a.v_head_stride),
                    take<0, 2>(typename Traits::SmemLayoutKV{}), Shape<BlockM, Dim>{}, _1{}),
      static_cast<Element*>(a.out), a.o_batch_stride, a.o_token_stride, a.o_head_stride, a.lse,
      a.kv_indices, a.kv_counts, a.block_lens,
      a.idx_batch_stride, a.idx_head_stride, a.idx_block_stride,
      a.cnt_batch_stride, a.cnt_head_stride, a.max_blocks,
      a.batch, a.tokens, a.heads, a.num_blocks, a.num_blocks * a.heads * a.batch, a.tile_counter,
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
