// Compile-time shape of the Hopper block-sparse attention kernel: tiles, shared-memory
// layouts, the two warpgroup GEMMs and the TMA copy types. Only dtype and head dim are
// template parameters; everything about the sparsity pattern is decided at run time.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_atom.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/cutlass.h>

namespace draftattn::sm90 {
using namespace cute;

template <class Element_, int HeadDim>
struct AttentionTraits {
  using Element = Element_;
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kBlockM = 128;  // query rows per CTA tile = one region
  static constexpr int kBlockN = 128;  // key rows per step = one region
  static constexpr int kStages = 2;    // K and V shared-memory stages
  static constexpr int kConsumerWarpgroups = 2;  // 64 query rows each
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 + kConsumerThreads;  // warpgroup 0 produces

  using BlockM = Int<kBlockM>;
  using BlockN = Int<kBlockN>;
  using Dim = Int<kHeadDim>;

  // S = Q K^T: both operands K-major in shared memory.
  using MmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<BlockM, BlockN, Dim>>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));
  // O += P V: P from registers, V read transposed (MN-major) from shared memory.
  using MmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<BlockM, Dim, BlockN>, GMMA::Major::K,
                           GMMA::Major::MN>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));

  using SmemAtom = GMMA::Layout_K_SW128_Atom<Element>;
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<BlockM, Dim>{}));
  using SmemLayoutKV = decltype(tile_to_shape(SmemAtom{}, Shape<BlockN, Dim, Int<kStages>>{}));
  // The same V bytes seen as (head_dim, kv, stage): the B operand of O += P V.
  using SmemLayoutVt = decltype(composition(
      SmemLayoutKV{},
      make_layout(Shape<Dim, BlockN, Int<kStages>>{},
                  Stride<BlockN, _1, Int<kBlockN * kHeadDim>>{})));

  // (tokens, head_dim, heads, batch) view of a (batch, tokens, heads, head_dim) tensor.
  using GmemShape = Shape<int32_t, Dim, int32_t, int32_t>;
  using GmemStride = Stride<int64_t, _1, int64_t, int64_t>;
  using GmemLayout = Layout<GmemShape, GmemStride>;
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{},
                                      make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemLayout{}),
                                      SmemLayoutQ{}, Shape<BlockM, Dim>{}, _1{}));
  using TmaKV = decltype(make_tma_copy(SM90_TMA_LOAD{},
                                       make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemLayout{}),
                                       take<0, 2>(SmemLayoutKV{}), Shape<BlockN, Dim>{}, _1{}));

  static constexpr uint32_t kTileBytes = kBlockM * kHeadDim * sizeof(Element);

  struct SharedStorage {
    array_aligned<Element, cosize_v<SmemLayoutQ>, 1024> q;
    array_aligned<Element, cosize_v<SmemLayoutKV>, 1024> k;
    array_aligned<Element, cosize_v<SmemLayoutKV>, 1024> v;
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
