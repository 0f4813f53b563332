// Compile-time shape of the Hopper block-sparse attention kernel: tiles, shared-memory
// layouts, the two warpgroup GEMMs and the TMA copy types. Only the input type and head
// dim are template parameters; everything about the sparsity pattern is a run-time input.
//
// 16-bit inputs: V is read as stored, (token, head_dim), and the PV GEMM takes it
// MN-major. FP8 inputs: wgmma wants both operands K-major, so V arrives transposed,
// (head_dim, token) per head, written that way by the quantization pass.
//
// A step of the main loop covers kBlocksPerStep listed kv blocks. TMA loads each block into
// its own slot; the slots of one step sit back to back in shared memory, so the GEMMs see one
// (step keys x head_dim) operand.
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
  static constexpr int kBlockN = 128;  // key rows of one listed kv block = one region
  // S one step ahead (fp8, head dim 128): step j issues the PV GEMM of P_{j-1} and the S GEMM
  // of step j+1, then runs the softmax of S_j under both, so a warpgroup keeps the tensor
  // cores busy through its own softmax. Measured on the H100 (Wan-14B suite): +3-4.5% over
  // three 64-key chunks a step, once K and V have four stages.
  static constexpr bool kSAhead = kFp8 && HeadDim == 128;
  // A step of the main loop covers kBlocksPerStep listed kv blocks. Longer steps spread the
  // per-step costs that do not grow with the keys (GEMM and barrier waits, row-max shuffles)
  // over more keys, as far as S (step/2 registers), P (step/8 for fp8) and O (head_dim/2) fit
  // beside each other: fp8 d=64 runs 20% faster with two blocks a step. kSAhead holds two S
  // accumulators instead, one block each.
  static constexpr int kBlocksPerStep = kFp8 && HeadDim == 64 ? 2 : 1;
  static constexpr int kStepN = kBlockN * kBlocksPerStep;
  // K and V shared-memory stages, one step each. With S one step ahead the K load of step
  // j+1 is waited for a step earlier; with two stages it arrives late (-5 to -8% on the H100;
  // three stages +7%, four +9%, six no more).
  static constexpr int kStages = kSAhead ? 4 : 2;
  static constexpr int kConsumerWarpgroups = 2;  // 64 query rows each
  // The switches from here to kStagger shape the loop that issues S_j and P_{j-1} V together;
  // the S-ahead loop (kSAhead) has one fixed order (ping-pong, stagger and the rescale under
  // the S GEMM are off for it; the other switches it does not read).
  // GEMM issue alternates between the warpgroups only where the GEMMs outlast the softmax
  // (16-bit, head dim 128): measured on the H100, the alternation costs fp8 and d=64 4-7%.
  static constexpr bool kPingPong = !kFp8 && HeadDim == 128;
  // Where the output rows are rescaled: under the next S GEMM (before the PV GEMM is issued)
  // or after the PV GEMM completes. Measured on the H100: under the GEMM is 1-5% faster for
  // 16-bit types, 2.5% slower for fp8 (1.5% with two-block steps).
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
  // (measured: fp8 +0.5-1%, d=64 up to +5% at low density). With steps of two whole blocks
  // the warpgroups find their turns without it (fp8 d=64: +5% at density 1, +2.5% at 0.1),
  // and with S one step ahead (+1-2%).
  static constexpr bool kStagger = !kPingPong && !kSAhead && kStepN < 2 * kBlockN;
  // Registers per thread after the warpgroups resize (setmaxnreg); 2 x 128 x consumer +
  // 128 x producer fits the registers the CTA launched with. Two-block steps make the
  // producer's step bookkeeping heavier, and their consumers need no more than 224.
  // kSAhead: two S accumulators need 240 (ptxas serializes the wgmma at 232); the producer
  // warp then spills 136 bytes at 24 (per tile and step, not in the consumers).
  static constexpr int kConsumerRegisters = kSAhead ? 240 : kBlocksPerStep > 1 ? 224 : 232;
  static constexpr int kProducerRegisters = kSAhead ? 24 : kBlocksPerStep > 1 ? 56 : 40;
  // Whether the row sums of P come from the tensor cores: P times a tile of ones (N = 8) in
  // the PV GEMM's batch, rescaled with O, instead of one add per probability in the softmax.
  // Measured on the H100: fp8 d=64 +1.5-2.5% at density 1 (unchanged at 0.1); fp8 d=128 -1 to
  // -3% and bf16 d=64 -1%, where the tensor cores have less room.
  static constexpr bool kRowSumsByGemm = kFp8 && HeadDim == 64;
  // Of every 16 probabilities, how many come from two FP32-pipe instructions (LinearExp2,
  // online_softmax.cuh) instead of MUFU.EX2. fp8 only: P keeps 3 mantissa bits. Measured on
  // the H100: d=128, 12 of 16 +3% at density 1 and +1-3% at 0.25 (C++ bench), +2-3% and +5%
  // in the Wan-14B suite; 8 gain nothing, 14 no more than 12, 16 makes ptxas spill. d=64, all
  // 16: +12% at density 1 and 0.25, +4% at 0.1 (12 of 16: +8%).
  static constexpr int kLinearExp2Per16 = !kFp8 ? 0 : kSAhead ? 12 : 16;
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kThreads = 128 + kConsumerThreads;  // warpgroup 0 produces
  // The CTA keeps the registers it launched with (65536 / threads, 8 a thread at a time): a
  // setmaxnreg.inc past them waits for ever (240 / 32 hung the H100).
  static constexpr int kLaunchRegisters = 65536 / kThreads / 8 * 8;
  static_assert(kConsumerThreads * kConsumerRegisters + 128 * kProducerRegisters <= kThreads * kLaunchRegisters);

  using BlockM = Int<kBlockM>;
  using BlockN = Int<kBlockN>;
  using StepN = Int<kStepN>;
  using Dim = Int<kHeadDim>;
  using Stages = Int<kStages>;

  // S = Q K^T: both operands K-major in shared memory.
  using MmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<BlockM, StepN, Dim>>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));
  // O += P V: P from registers; V^T K-major for fp8, V MN-major for 16-bit types.
  static constexpr GMMA::Major kMajorV = kFp8 ? GMMA::Major::K : GMMA::Major::MN;
  using MmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<BlockM, Dim, StepN>, GMMA::Major::K, kMajorV>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));

  // Row sums: (64 x step) P times (step x 8) ones, both K-major.
  using MmaRowSum = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<BlockM, _8, StepN>, GMMA::Major::K, GMMA::Major::K>(),
      Layout<Shape<Int<kConsumerWarpgroups>, _1, _1>>{}));

  template <class Rows, class Cols>
  using KMajorAtom = decltype(cutlass::gemm::collective::detail::ss_smem_selector<GMMA::Major::K, Element, Rows, Cols>());
  using SmemLayoutQ = decltype(tile_to_shape(KMajorAtom<BlockM, Dim>{}, Shape<BlockM, Dim>{}));
  using SmemLayoutOnes = decltype(tile_to_shape(KMajorAtom<_8, StepN>{}, Shape<_8, StepN>{}));
  // GEMM views, one step per stage: K (key, head_dim, stage); the B operand of O += P V,
  // always indexed (head_dim, key, stage).
  using SmemLayoutK = decltype(tile_to_shape(KMajorAtom<StepN, Dim>{}, Shape<StepN, Dim, Stages>{}));
  // TMA views of the same memory, one block per slot: slot = stage * kBlocksPerStep + block
  // of the step. V as loaded: (token, head_dim, slot) for 16-bit, (head_dim, token, slot) for
  // fp8. The blocks of a step lie back to back in either view.
  using Slots = Int<kStages * kBlocksPerStep>;
  using SmemLayoutKSlots = decltype(tile_to_shape(KMajorAtom<BlockN, Dim>{}, Shape<BlockN, Dim, Slots>{}));
  using SmemLayoutVSlots = cute::conditional_t<
      kFp8, decltype(tile_to_shape(KMajorAtom<Dim, BlockN>{}, Shape<Dim, BlockN, Slots>{})), SmemLayoutKSlots>;
  static_assert(kFp8 || kBlocksPerStep == 1, "the MN-major V view below assumes one block per step");
  using SmemLayoutVt = cute::conditional_t<
      kFp8, decltype(tile_to_shape(KMajorAtom<Dim, StepN>{}, Shape<Dim, StepN, Stages>{})),
      decltype(composition(SmemLayoutKSlots{}, make_layout(Shape<Dim, BlockN, Stages>{},
                                                           Stride<BlockN, _1, Int<kBlockN * kHeadDim>>{})))>;
  static_assert(cosize_v<SmemLayoutK> == cosize_v<SmemLayoutKSlots> && cosize_v<SmemLayoutVt> == cosize_v<SmemLayoutVSlots>);

  // (tokens, head_dim, heads, batch) view of a (batch, tokens, heads, head_dim) tensor.
  using GmemLayout = Layout<Shape<int32_t, Dim, int32_t, int32_t>, Stride<int64_t, _1, int64_t, int64_t>>;
  // (head_dim, tokens, heads, batch) view of fp8 V^T stored (batch, heads, head_dim, tokens).
  using GmemLayoutVt = Layout<Shape<Dim, int32_t, int32_t, int32_t>, Stride<int64_t, _1, int64_t, int64_t>>;
  using TmaQ = decltype(tma_load_type<Element, GmemLayout, SmemLayoutQ, Shape<BlockM, Dim>>());
  using TmaK = decltype(tma_load_type<Element, GmemLayout, decltype(take<0, 2>(SmemLayoutKSlots{})), Shape<BlockN, Dim>>());
  using TmaV = decltype(tma_load_type<Element, cute::conditional_t<kFp8, GmemLayoutVt, GmemLayout>,
                                      decltype(take<0, 2>(SmemLayoutVSlots{})),
                                      cute::conditional_t<kFp8, Shape<Dim, BlockN>, Shape<BlockN, Dim>>>());

  static constexpr uint32_t kQBytes = kBlockM * kHeadDim * sizeof(Element);
  static constexpr uint32_t kStepBytes = kStepN * kHeadDim * sizeof(Element);  // K or V of one step

  // What the consumers need of a step's blocks besides their keys; the producer writes it
  // with the step's K tiles, so the consumers hold no copy of the block list.
  struct StepBlocks {
    int rows[kBlocksPerStep];         // valid key rows (0 past the list's end)
    float k_descale[kBlocksPerStep];  // the block's fp8 K dequantisation factor (1 otherwise)
  };

  struct SharedStorage {
    array_aligned<Element, cosize_v<SmemLayoutQ>, 1024> q;
    array_aligned<Element, cosize_v<SmemLayoutK>, 1024> k;
    array_aligned<Element, cosize_v<SmemLayoutVt>, 1024> v;
    array_aligned<Element, kRowSumsByGemm ? cosize_v<SmemLayoutOnes> : 1, 1024> ones;  // B of the row sums
    uint64_t q_full;
    uint64_t q_empty;
    uint64_t tile_full[2];
    uint64_t tile_empty[2];
    int tile_number[2];
    StepBlocks step_blocks[kStages];
    uint64_t k_full[kStages];
    uint64_t k_empty[kStages];
    uint64_t v_full[kStages];
    uint64_t v_empty[kStages];
  };
};

}  // namespace draftattn::sm90
