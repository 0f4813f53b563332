// Warp-specialized, persistent Hopper block-sparse attention. Each CTA takes tiles from a
// global atomic counter: one head after another, each head's query blocks longest list
// first (tile_order.cu), so the CTAs running at one time share one head's K, V in L2 and the
// run ends on short tiles. Warpgroup 0 (one warp) walks each tile's kv block list and streams
// Q and the K, V tiles of each step through TMA into shared-memory rings, publishing with
// each step's K tiles its blocks' valid rows and dequantisation factors; warpgroups 1 and 2
// each own 64 query rows and run S = Q K^T, the online softmax and O += P V on the tensor
// cores (wgmma). The rings run on across tiles, so the next tile's loads overlap the current
// tile's last steps and epilogue.
//
// A step covers kBlocksPerStep listed kv blocks (two for fp8 at d=64, otherwise one). What
// keeps the tensor cores busy while exponentials are computed (each choice measured,
// bench/NOTES.md):
// - fp8, head dim 128 (S one step ahead): step j issues O += P_{j-1} V_{j-1} and
//   S_{j+1} = Q K_{j+1}, then runs the softmax of S_j under both; two S accumulators, four
//   K, V stages;
// - otherwise step j issues S_j = Q K_j and O += P_{j-1} V_{j-1} together;
//   - 16-bit, head dim 128: GEMM issue is a critical section handed back and forth between
//     the two warpgroups through two named barriers (ping-pong), so one warpgroup's softmax
//     runs under the other's GEMMs, and the softmax of S_j also runs under the warpgroup's
//     own PV GEMM;
//   - fp8 and 16-bit at head dim 64, where the softmax outlasts the GEMMs: no alternation;
//     with one block a step the second warpgroup starts each tile one softmax behind the
//     first; each warpgroup lets its PV GEMM finish before its exponentials (fp8 takes the
//     row maxima under it, and waits for the next K, V tiles before converting P rather than
//     before issuing the GEMMs).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "consumer.cuh"
#include "kernel_params.cuh"
#include "kernel_traits.cuh"
#include "producer.cuh"
#include "tile_pipeline.cuh"

namespace draftattn::sm90 {
using namespace cute;

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    sparse_attn_kernel(const __grid_constant__ KernelParams<Traits> p) {
  extern __shared__ __align__(1024) char smem_bytes[];
  auto& smem = *reinterpret_cast<typename Traits::SharedStorage*>(smem_bytes);

  // The row sums' B operand: ones, read by wgmma (the async proxy) once the fence is passed.
  if constexpr (Traits::kRowSumsByGemm) {
    for (int i = threadIdx.x; i < cosize_v<typename Traits::SmemLayoutOnes>; i += blockDim.x) {
      smem.ones[i] = typename Traits::Element(1.f);
    }
    cutlass::arch::fence_view_async_shared();
  }
  if (threadIdx.x == 0) {
    Barrier::init(&smem.q_full, 1);
    Barrier::init(&smem.q_empty, Traits::kConsumerThreads);
    for (int s = 0; s < 2; ++s) {
      Barrier::init(&smem.tile_full[s], 1);
      Barrier::init(&smem.tile_empty[s], Traits::kConsumerThreads);
    }
#pragma unroll
    for (int s = 0; s < Traits::kStages; ++s) {
      Barrier::init(&smem.k_full[s], 1);
      Barrier::init(&smem.v_full[s], 1);
      Barrier::init(&smem.k_empty[s], Traits::kConsumerThreads);
      Barrier::init(&smem.v_empty[s], Traits::kConsumerThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  if (threadIdx.x < 128) {
    cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegisters>();
    if (threadIdx.x < 32) produce<Traits>(p, smem);
  } else {
    cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegisters>();
    consume<Traits>(p, smem);
  }
}

}  // namespace draftattn::sm90
