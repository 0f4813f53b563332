// Compile-time shape of the Hopper block-sparse attention kernel: tiles, shared-memory
// layouts, the two warpgroup GEMMs and the TMA copy types. Only the input type and head
// dim are template parameters; everything about the sparsity pattern is a run-time input.
//
// 16-bit inputs: V is read as stored, (token, head_dim), and the PV GEMM takes it
// MN-major. FP8 inputs: wgmma wants both operands K-major, so V arrives transposed,
// (head_dim, token) per head, written that way by the quantization pass.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_atom.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/cutlass.h>
#include <cutlass/gemm/collective/builders/sm90_common.inl>

namespace draftattn::sm90 {
using namespace cute;

// A TMA copy type, formed only for the layouts that are asked for (a conditional_t of two
// TMA types would form both, and the wrong one fails CuTe's static checks).
template <class Element, class GmemLayout, class SmemLayout, class Box>
auto tma_load_type() {
  return make_tma_copy(SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemLayout{}),
                       SmemLayout{}, Box{}, _1{});
}

template <class Element_, int HeadDim>
struct AttentionTraits {
  using Element = Element_;
  static constexpr bool kFp8 = sizeof(Element) == 1;
  using OutElement = cute::conditional_t<kFp8, cutlass::bfloat16_t, Element>;
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockM = 128;  // query rows per CTA tile = one region
  static constexpr int kBlockN = 128;  // key rows per step = one region
  static constexpr int kStages = 2;    // K and V shared-memory stages
  static constexpr int kConsumerWarpgroups = 2;  // 64 query rows each
  // GEMM issue alternates between the warpgroups only where the GEMMs outlast the softmax
  // (16-bit, head dim 128): measured on the H100, the alternation costs fp8 and d=64 4-7%.
  static constexpr bool kPingPong = !kFp8 && HeadDim == 128;
  // Where the output rows are rescaled: under the next S GEMM (before the PV GEMM is issued)
  // or after the PV GEMM completes. Measured on the H100: under the GEMM is 1-5% faster for
  // 16-bit types, 2.5% slower for fp8.
  static constexpr bool kRescaleUnderQK = !kFp8;
  // Whether a warpgroup's softmax runs while its previous PV GEMM is still in flight. Left
  // to itself ptxas waits for the PV GEMM first (online_softmax.cuh, end_block). Measured on
  // the H100: the overlap gains 1% with ping-pong and loses 2-5% without it (fp8, d=64),
  // where the other warpgroup's GEMMs already fill the tensor cores during a softmax.
  static constexpr bool kSoftmaxUnderPV = kPingPong;
  // Where it does not, fp8 still takes the row maxima (and their shuffles) under the PV
  // GEMM and only the exponentials after it (measured on the H100: +2-3% fp8; 16-bit d=64
  // loses 1-2% at density 1 and 5% at 0.1).
  static constexpr bool kMaxUnderPV = kFp8 && !kSoftmaxUnderPV;
  // Whether a step waits for the next K and V tiles before converting its probabilities
  // rather than just before issuing the next GEMMs, so the barrier latency hides behind the
  // conversion (measured: fp8 +1-2%; 16-bit loses 1-2%).
  static constexpr bool kWaitTilesEarly = kFp8;
  // Without ping-pong the second warpgroup starts each tile one softmax behind the first
  // (measured: fp8 +0.5-1%, d=64 up to +5% at low density).
  static constexpr bool kStagger = !kPingPong;
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 + kConsumerThreads;  // warpgroup 0 produces

  using BlockM = Int<kBlockM>;
  using BlockN = Int<kBlockN>;
  using Dim = Int<kHeadDim>;
  using Stages = Int<kStages>;

  // S = Q K^T: both operands K-major in shared memory.
  using MmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<BlockM, BlockN, Dim>>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));
  // O += P V: P from registers; V^T K-major for fp8, V MN-major for 16-bit types.
  static constexpr GMMA::Major kMajorV = kFp8 ? GMMA::Major::K : GMMA::Major::MN;
  using MmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<BlockM, Dim, BlockN>, GMMA::Major::K, kMajorV>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));

  template <class Rows, class Cols>
  using KMajorAtom = decltype(cutlass::gemm::collective::detail::ss_smem_selector<GMMA::Major::K, Element, Rows, Cols>());
  using SmemLayoutQ = decltype(tile_to_shape(KMajorAtom<BlockM, Dim>{}, Shape<BlockM, Dim>{}));
  using SmemLayoutK = decltype(tile_to_shape(KMajorAtom<BlockN, Dim>{}, Shape<BlockN, Dim, Stages>{}));
  // V as loaded: (token, head_dim, stage) for 16-bit, (head_dim, token, stage) for fp8.
  using SmemLayoutV = cute::conditional_t<
      kFp8, decltype(tile_to_shape(KMajorAtom<Dim, BlockN>{}, Shape<Dim, BlockN, Stages>{})), SmemLayoutK>;
  // The B operand of O += P V, always indexed (head_dim, token, stage).
  using SmemLayoutVt = cute::conditional_t<
      kFp8, SmemLayoutV,
      decltype(composition(SmemLayoutV{}, make_layout(Shape<Dim, BlockN, Stages>{},
                                                      Stride<BlockN, _1, Int<kBlockN * kHeadDim>>{})))>;

  // (tokens, head_dim, heads, batch) view of a (batch, tokens, heads, head_dim) tensor.
  using GmemLayout = Layout<Shape<int32_t, Dim, int32_t, int32_t>, Stride<int64_t, _1, int64_t, int64_t>>;
  // (head_dim, tokens, heads, batch) view of fp8 V^T stored (batch, heads, head_dim, tokens).
  using GmemLayoutVt = Layout<Shape<Dim, int32_t, int32_t, int32_t>, Stride<int64_t, _1, int64_t, int64_t>>;
  using TmaQ = decltype(tma_load_type<Element, GmemLayout, SmemLayoutQ, Shape<BlockM, Dim>>());
  using TmaK = decltype(tma_load_type<Element, GmemLayout, decltype(take<0, 2>(SmemLayoutK{})), Shape<BlockN, Dim>>());
  using TmaV = decltype(tma_load_type<Element, cute::conditional_t<kFp8, GmemLayoutVt, GmemLayout>,
                                      decltype(take<0, 2>(SmemLayoutV{})),
                                      cute::conditional_t<kFp8, Shape<Dim, BlockN>, Shape<BlockN, Dim>>>());

  static constexpr uint32_t kTileBytes = kBlockM * kHeadDim * sizeof(Element);

  struct SharedStorage {
    array_aligned<Element, cosize_v<SmemLayoutQ>, 1024> q;
    array_aligned<Element, cosize_v<SmemLayoutK>, 1024> k;
    array_aligned<Element, cosize_v<SmemLayoutV>, 1024> v;
    uint64_t q_full;
    uint64_t q_empty;
    uint64_t tile_full[2];
    uint64_t tile_empty[2];
    int tile_number[2];
    uint64_t k_full[kStages];
    uint64_t k_empty[kStages];
    uint64_t v_full[kStages];
    uint64_t v_empty[kStages];
  };
};

}  // namespace draftattn::sm90
