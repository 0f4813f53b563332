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
#include <cutlass/array.h>
#include <cutlass/numeric_conversion.h>

#include "block_list.cuh"
#include "kernel_params.cuh"
#include "kernel_traits.cuh"
#include "online_softmax.cuh"
#include "probability_operand.cuh"

namespace draftattn::sm90 {
using namespace cute;
using Barrier = cutlass::arch::ClusterTransactionBarrier;

struct Tile {
  int q_block, head, batch;
};

// Tiles are numbered (batch, head, query block), query blocks fastest, so the CTAs running
// at the same time share one head's K, V in L2. The scheduler hands out ranks; a rank's
// query block comes from the longest-rows-first order of its head (tile_order.cu).
template <class Params>
__device__ __forceinline__ int tile_of_rank(const Params& p, int rank) {
  const int num_blocks = p.args.num_blocks;
  return rank - rank % num_blocks + p.tile_order[rank];
}

template <class Params>
__device__ __forceinline__ Tile tile_at(const Params& p, int tile) {
  const int rest = tile / p.args.num_blocks;
  return {tile - rest * p.args.num_blocks, rest % p.args.heads, rest / p.args.heads};
}

// Position in a shared-memory ring of kStages slots; the phase bit flips on each wrap.
template <int kStages>
struct RingPosition {
  int stage;
  uint32_t phase;
  __device__ __forceinline__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
};

// The producer fetches tile numbers and posts each one to the consumers through a
// two-slot mailbox in shared memory; a number >= num_tiles means "done".
template <class Storage>
struct TileMailbox {
  Storage& smem;
  RingPosition<2> slot;

  __device__ __forceinline__ void post(int tile) {
    Barrier::wait(&smem.tile_empty[slot.stage], slot.phase);
    *reinterpret_cast<volatile int*>(&smem.tile_number[slot.stage]) = tile;
    asm volatile("" ::: "memory");
    Barrier::arrive(&smem.tile_full[slot.stage]);
    slot.advance();
  }

  __device__ __forceinline__ int take() {
    Barrier::wait(&smem.tile_full[slot.stage], slot.phase);
    asm volatile("" ::: "memory");
    const int tile = *reinterpret_cast<volatile int*>(&smem.tile_number[slot.stage]);
    Barrier::arrive(&smem.tile_empty[slot.stage]);
    slot.advance();
    return tile;
  }
};

template <class Traits>
__device__ __forceinline__ void produce(const KernelParams<Traits>& p, typename Traits::SharedStorage& smem) {
  using BlockM = typename Traits::BlockM;
  using BlockN = typename Traits::BlockN;
  using Dim = typename Traits::Dim;
  const int lane = threadIdx.x % 32;

  Tensor sQ = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutKSlots{});
  Tensor sV = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutVSlots{});
  const SparseAttnParams& a = p.args;
  const auto gmem_shape = make_shape(a.tokens, Dim{}, a.heads, a.batch);
  Tensor mQ = p.tma_q.get_tma_tensor(gmem_shape);
  Tensor mK = p.tma_k.get_tma_tensor(gmem_shape);
  Tensor mV = p.tma_v.get_tma_tensor(
      conditional_return<Traits::kFp8>(make_shape(Dim{}, a.num_blocks * Traits::kBlockN, a.heads, a.batch), gmem_shape));

  // A fresh "empty" barrier counts as released once, so the producer starts at phase 1.
  RingPosition<Traits::kStages> k_slot{0, 1}, v_slot{0, 1};
  uint32_t q_loads = 0;
  TileMailbox<typename Traits::SharedStorage> mailbox{smem, {0, 1}};
  for (int rank = blockIdx.x;;) {
    const int t = rank < p.num_tiles ? tile_of_rank(p, rank) : p.num_tiles;
    if (lane == 0) mailbox.post(t);
    if (t >= p.num_tiles) break;
    int next = 0;
    if (lane == 0) next = gridDim.x + atomicAdd(p.tile_counter, 1);
    const Tile tile = tile_at(p, t);
    const BlockList list = block_list_of(p, tile.batch, tile.head, tile.q_block);
    rank = __shfl_sync(0xffffffff, next, 0);
    if (list.count == 0) continue;

    Tensor gQ = local_tile(mQ(_, _, tile.head, tile.batch), Shape<BlockM, Dim>{}, make_coord(tile.q_block, _0{}));
    Tensor gK = local_tile(mK(_, _, tile.head, tile.batch), Shape<BlockN, Dim>{}, make_coord(_, _0{}));
    // (block rows, block cols, block): V^T blocks for fp8 are (head_dim, token).
    Tensor gV = [&] {
      if constexpr (Traits::kFp8) {
        return local_tile(mV(_, _, tile.head, tile.batch), Shape<Dim, BlockN>{}, make_coord(_0{}, _));
      } else {
        return local_tile(mV(_, _, tile.head, tile.batch), Shape<BlockN, Dim>{}, make_coord(_, _0{}));
      }
    }();
    auto [tQg, tQs] = tma_partition(p.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gQ));
    const auto k_views = tma_partition(p.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
    const auto v_views = tma_partition(p.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gV));

    // One step's blocks with their valid rows and K dequantisation factors. Past the list's
    // end the last block repeats with no valid rows: the consumers mask those keys out, and
    // the shared memory they read stays finite.
    constexpr int kBlocks = Traits::kBlocksPerStep;
    struct StepLoad {
      int at[kBlocks];  // which kv block of the head
      typename Traits::StepBlocks published;
    };
    const float* k_descales =
        Traits::kFp8 ? a.k_descale + (int64_t(tile.batch) * a.heads + tile.head) * a.num_blocks : nullptr;
    WarpListCursor blocks(list);
    int block = 0;
    auto load_of_step = [&](int step) {
      StepLoad load;
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        const int j = step * kBlocks + b;
        const bool listed = j < list.count;
        if (listed) block = blocks.at(j);
        load.at[b] = block;
        load.published.rows[b] = listed ? valid_rows(a, tile.batch, block) : 0;
        load.published.k_descale[b] = listed && k_descales != nullptr ? k_descales[block] : 1.f;
      }
      return load;
    };
    // `publish(stage)` runs once the slot is free, before the arrival that fills it.
    auto load_step = [&](const auto& tma, const auto& views, uint64_t* full, uint64_t* empty, auto& slot,
                         const StepLoad& load, auto&& publish) {
      Barrier::wait(&empty[slot.stage], slot.phase);
      publish(slot.stage);
      Barrier::arrive_and_expect_tx(&full[slot.stage], Traits::kStepBytes);
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        copy(tma.with(full[slot.stage]), get<0>(views)(_, load.at[b]), get<1>(views)(_, slot.stage * kBlocks + b));
      }
      slot.advance();
    };
    // K tiles come with their step's rows and factors (read from global memory before the
    // wait for the slot, so the wait covers their latency).
    auto load_k_step = [&](const StepLoad& load) {
      load_step(p.tma_k, k_views, smem.k_full, smem.k_empty, k_slot, load,
                [&](int stage) { smem.step_blocks[stage] = load.published; });
    };
    auto load_v_step = [&](const StepLoad& load) {
      load_step(p.tma_v, v_views, smem.v_full, smem.v_empty, v_slot, load, [](int) {});
    };

    // Loads follow the consumers' order: K of step 0, then K of step i before V of step
    // i-1, then the last V.
    const int steps = (list.count + kBlocks - 1) / kBlocks;
    StepLoad previous = load_of_step(0);
    if (lane == 0) {
      Barrier::wait(&smem.q_empty, (q_loads & 1) ^ 1);
      Barrier::arrive_and_expect_tx(&smem.q_full, Traits::kQBytes);
      copy(p.tma_q.with(smem.q_full), tQg, tQs);
      load_k_step(previous);
    }
    for (int i = 1; i < steps; ++i) {
      const StepLoad current = load_of_step(i);
      if (lane == 0) {
        load_k_step(current);
        load_v_step(previous);
      }
      previous = current;
    }
    if (lane == 0) load_v_step(previous);
    __syncwarp();
    ++q_loads;
  }
}

// Named barriers: 0 is __syncthreads, 1 and 2 hand the GEMM turn back and forth (PingPong),
// 3 holds the second warpgroup one softmax behind the first where there is no ping-pong.
constexpr int kStaggerBarrier = 3;

// Hands the right to issue GEMMs back and forth between the two consumer warpgroups, so
// one's softmax runs under the other's GEMMs. Where the softmax outlasts the GEMMs (fp8,
// head dim 64) the strict alternation only adds barrier waits, and it is compiled out.
template <bool kEnabled>
struct PingPong {
  static constexpr int kFirstBarrier = 1;
  int self;

  __device__ __forceinline__ void wait_turn() const {
    if constexpr (kEnabled) cutlass::arch::NamedBarrier::sync(256, kFirstBarrier + self);
  }
  __device__ __forceinline__ void pass_turn() const {
    if constexpr (kEnabled) cutlass::arch::NamedBarrier::arrive(256, kFirstBarrier + (self ^ 1));
  }
};

template <class Traits>
__device__ __forceinline__ void consume(const KernelParams<Traits>& p, typename Traits::SharedStorage& smem) {
  using Element = typename Traits::Element;
  using OutElement = typename Traits::OutElement;
  using BlockM = typename Traits::BlockM;
  using StepN = typename Traits::StepN;
  using Dim = typename Traits::Dim;
  constexpr int kBlocks = Traits::kBlocksPerStep;
  const int thread = threadIdx.x - 128;  // 0 .. kConsumerThreads-1

  Tensor sQ = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutK{});
  Tensor sVt = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutVt{});
  Tensor sOnes = make_tensor(make_smem_ptr(smem.ones.data()), typename Traits::SmemLayoutOnes{});

  typename Traits::MmaQK mma_qk;
  typename Traits::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(thread);
  auto thr_pv = mma_pv.get_thread_slice(thread);
  Tensor tSrQ = thr_qk.partition_fragment_A(sQ);
  Tensor tSrK = thr_qk.partition_fragment_B(sK);
  Tensor tOrV = thr_pv.partition_fragment_B(sVt);
  typename Traits::MmaRowSum mma_sum;
  Tensor tLrOnes = mma_sum.get_thread_slice(thread).partition_fragment_B(sOnes);
  Tensor tLrL = partition_fragment_C(mma_sum, Shape<BlockM, _8>{});  // row sums, 8 equal columns
  Tensor sums_rc = make_tensor(tLrL.data(), as_rows_cols(tLrL.layout()));
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<BlockM, StepN>{});
  Tensor tSrS2 = partition_fragment_C(mma_qk, Shape<BlockM, StepN>{});  // kSAhead: the next step's S
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<BlockM, Dim>{});
  Tensor tScS = thr_qk.partition_C(make_identity_tensor(Shape<BlockM, StepN>{}));
  Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<BlockM, Dim>{}));
  Tensor scores = make_tensor(tSrS.data(), as_rows_cols(tSrS.layout()));
  Tensor out_rc = make_tensor(tOrO.data(), as_rows_cols(tOrO.layout()));
  Tensor score_coords = make_tensor(tScS.data(), as_rows_cols(tScS.layout()));
  constexpr int kRows = decltype(size<0>(scores))::value;

  static_assert(decltype(size<0>(tSrS))::value == Traits::kStepN / 2 && decltype(size<1>(tSrS))::value == 1 &&
                decltype(size<2>(tSrS))::value == 1);
  Tensor tOrP = make_tensor<Element>(probability_operand_layout<Traits::kFp8, Traits::kStepN>());
  auto issue_qk = [&](decltype(tSrS)& accumulator, int stage) {
    mma_qk.accumulate_ = GMMA::ScaleOut::Zero;
    warpgroup_fence_operand(accumulator);
    warpgroup_arrive();
#pragma unroll
    for (int kb = 0; kb < size<2>(tSrQ); ++kb) {
      gemm(mma_qk, tSrQ(_, _, kb), tSrK(_, _, kb, stage), accumulator);
      mma_qk.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
  };
  auto fence_accumulators = [&] {
    warpgroup_fence_operand(tOrO);
    if constexpr (Traits::kRowSumsByGemm) warpgroup_fence_operand(tLrL);
  };
  auto issue_pv = [&](int stage) {
    fence_accumulators();
    warpgroup_arrive();
#pragma unroll
    for (int kb = 0; kb < size<2>(tOrP); ++kb) {
      gemm(mma_pv, tOrP(_, _, kb), tOrV(_, _, kb, stage), tOrO);
      if constexpr (Traits::kRowSumsByGemm) gemm(mma_sum, tOrP(_, _, kb), tLrOnes(_, _, kb), tLrL);
    }
    warpgroup_commit_batch();
  };
  using Softmax = OnlineSoftmax<kRows, !Traits::kRowSumsByGemm>;
  auto rescale = [&](const float (&correction)[kRows]) {
    if constexpr (Traits::kRowSumsByGemm) {
      Softmax::rescale(correction, out_rc, sums_rc);
    } else {
      Softmax::rescale(correction, out_rc);
    }
  };
  auto probabilities_to_operand = [&](decltype(tSrS)& accumulator) {
    to_probability_operand<Traits::kFp8, Traits::kStepN>(accumulator, tOrP);
  };
  // Columns past a block's valid rows take no part in the softmax. Block b of a step holds
  // the score columns [b, b + 1) * kBlockN, the b-th equal part of each row.
  auto mask_columns = [&](decltype(scores)& masked, const int (&kv_rows)[kBlocks]) {
    constexpr int kPartCols = decltype(size<1>(masked))::value / kBlocks;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      if (kv_rows[b] < Traits::kBlockN) {
        const int end = b * Traits::kBlockN + kv_rows[b];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
#pragma unroll
          for (int col = b * kPartCols; col < (b + 1) * kPartCols; ++col) {
            if (get<1>(score_coords(r, col)) >= end) masked(r, col) = -INFINITY;
          }
        }
      }
    }
  };


  const PingPong<Traits::kPingPong> turn{thread / 128};
  RingPosition<Traits::kStages> k_slot{0, 0}, v_slot{0, 0};
  // The K and V tiles of the next step.
  auto wait_tiles = [&] {
    Barrier::wait(&smem.k_full[k_slot.stage], k_slot.phase);
    Barrier::wait(&smem.v_full[v_slot.stage], v_slot.phase);
  };
  // Once the S GEMM that read them is done (its result in `scores_done`); Q too after the
  // tile's last S GEMM, so the next tile's Q loads meanwhile.
  auto release_k = [&](decltype(tSrS)& scores_done, bool last_of_tile) {
    warpgroup_fence_operand(scores_done);
    Barrier::arrive(&smem.k_empty[k_slot.stage]);
    k_slot.advance();
    if (last_of_tile) Barrier::arrive(&smem.q_empty);
  };
  // Once the PV GEMM that read them is done.
  auto release_v = [&] {
    fence_accumulators();
    Barrier::arrive(&smem.v_empty[v_slot.stage]);
    v_slot.advance();
  };
  uint32_t q_uses = 0;
  TileMailbox<typename Traits::SharedStorage> mailbox{smem, {0, 0}};
  const SparseAttnParams& a = p.args;
  for (int t = mailbox.take(); t < p.num_tiles; t = mailbox.take()) {
    const Tile tile = tile_at(p, t);
    const BlockList list = block_list_of(p, tile.batch, tile.head, tile.q_block);
    clear(tOrO);
    clear(tLrL);
    // fp8 probabilities are scaled into [0, 256] to use e4m3's range; the scale cancels.
    Softmax softmax(Traits::kFp8 ? 8.f : 0.f);
    const int64_t head_index = int64_t(tile.batch) * a.heads + tile.head;
    // fp8 scores carry the q and k dequantisation factors: folded into each step's scale.
    const float q_scale_log2 =
        p.scale_log2 * (Traits::kFp8 ? a.q_descale[head_index * a.num_blocks + tile.q_block] : 1.f);
    float correction[kRows];

    if (list.count > 0) {
      // This step's valid key rows and score scales, one per block, as the producer
      // published them with the K tiles (read before those are released).
      int kv_rows[kBlocks];
      float scale_log2[kBlocks];
      auto read_step = [&](int (&rows)[kBlocks], float (&scales)[kBlocks]) {
        const auto& published = smem.step_blocks[k_slot.stage];
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          rows[b] = published.rows[b];
          scales[b] = q_scale_log2 * published.k_descale[b];
        }
      };
      const int steps = (list.count + kBlocks - 1) / kBlocks;
      if (turn.self == 1) turn.pass_turn();  // the first warpgroup goes first
      Barrier::wait(&smem.q_full, q_uses & 1);

      if constexpr (Traits::kSAhead) {
        // Step j starts with S_j done in `current` (its rows and factors in next_rows,
        // next_scale) and P_{j-1} in registers; it issues P_{j-1} V and S_{j+1} = Q K_{j+1}
        // into `next`, runs the softmax of S_j under both, converts P_j once the PV GEMM is
        // done, and ends with S_{j+1} done. The two S accumulators alternate by name.
        int next_rows[kBlocks];
        float next_scale[kBlocks];
        auto issue_s = [&](decltype(tSrS)& accumulator, int (&rows)[kBlocks], float (&scales)[kBlocks]) {
          Barrier::wait(&smem.k_full[k_slot.stage], k_slot.phase);
          issue_qk(accumulator, k_slot.stage);
          read_step(rows, scales);
        };
        // The softmax of a step, ending its basic block after the last exponential: ptxas puts
        // a wgmma wait at the top of the block that holds it, and the waits that follow must
        // not move above the exponentials they are meant to overlap.
        auto softmax_of = [&](decltype(tSrS)& accumulator) {
          Tensor rc = make_tensor(accumulator.data(), as_rows_cols(accumulator.layout()));
          mask_columns(rc, kv_rows);
          softmax.template update<false>(rc, correction, scale_log2);
          softmax.end_block();
        };
        // The first half of step j: S_j's rows and factors become current, P_{j-1} V issued.
        auto begin_step = [&] {
#pragma unroll
          for (int b = 0; b < kBlocks; ++b) {
            kv_rows[b] = next_rows[b];
            scale_log2[b] = next_scale[b];
          }
          Barrier::wait(&smem.v_full[v_slot.stage], v_slot.phase);
          issue_pv(v_slot.stage);
        };
        auto finish_step = [&](decltype(tSrS)& current) {
          release_v();
          rescale(correction);
          probabilities_to_operand(current);
        };
        // Inlined always: as a call (cicc's choice once the loop grows) the wgmma around it
        // are serialized (C7520).
        auto step = [&](decltype(tSrS)& current, decltype(tSrS)& next, int j) __attribute__((always_inline)) {
          begin_step();
          issue_s(next, next_rows, next_scale);
          softmax_of(current);
          warpgroup_wait<1>();  // P_{j-1} V; S_{j+1} may still run
          finish_step(current);
          warpgroup_wait<0>();
          release_k(next, j + 1 == steps - 1);
        };
        auto last_step = [&](decltype(tSrS)& current) __attribute__((always_inline)) {
          begin_step();
          softmax_of(current);
          warpgroup_wait<0>();
          finish_step(current);
        };

        issue_s(tSrS, kv_rows, scale_log2);
        warpgroup_wait<0>();
        release_k(tSrS, steps == 1);
        // The first softmax, with S_1 in flight if there is a second step (one branch for
        // both, so ptxas sees the S_1 GEMM waited for on every path that issued it).
        if (steps > 1) {
          issue_s(tSrS2, next_rows, next_scale);
          softmax_of(tSrS);
          probabilities_to_operand(tSrS);
          warpgroup_wait<0>();
          release_k(tSrS2, steps == 2);
        } else {
          softmax_of(tSrS);
          probabilities_to_operand(tSrS);
        }
        int j = 1;
        for (; j + 2 < steps; j += 2) {
          step(tSrS2, tSrS, j);
          step(tSrS, tSrS2, j + 1);
        }
        if (j + 1 < steps) {
          step(tSrS2, tSrS, j);
          last_step(tSrS);
        } else if (j < steps) {
          last_step(tSrS2);
        }
      } else {
        Barrier::wait(&smem.k_full[k_slot.stage], k_slot.phase);
        // Without ping-pong the second warpgroup starts one softmax behind the first, so the
        // two tend to take turns on the tensor cores and the exponential units.
        if (Traits::kStagger && turn.self == 1) cutlass::arch::NamedBarrier::sync(256, kStaggerBarrier);
        turn.wait_turn();
        issue_qk(tSrS, k_slot.stage);
        turn.pass_turn();
        read_step(kv_rows, scale_log2);
        warpgroup_wait<0>();
        release_k(tSrS, steps == 1);
        mask_columns(scores, kv_rows);
        softmax.template update<false>(scores, correction, scale_log2);
        if (Traits::kStagger && turn.self == 0) cutlass::arch::NamedBarrier::arrive(256, kStaggerBarrier);
        if (Traits::kWaitTilesEarly && steps > 1) wait_tiles();
        probabilities_to_operand(tSrS);

        for (int i = 1; i < steps; ++i) {
          if (!Traits::kWaitTilesEarly) wait_tiles();
          turn.wait_turn();
          issue_qk(tSrS, k_slot.stage);
          if constexpr (Traits::kRescaleUnderQK) rescale(correction);
          issue_pv(v_slot.stage);
          turn.pass_turn();
          read_step(kv_rows, scale_log2);
          warpgroup_wait<1>();  // S_i is ready; P_{i-1} V_{i-1} may still run
          release_k(tSrS, i == steps - 1);
          mask_columns(scores, kv_rows);
          softmax.template update<Traits::kMaxUnderPV>(scores, correction, scale_log2);
          if constexpr (Traits::kSoftmaxUnderPV) softmax.end_block();
          warpgroup_wait<0>();
          release_v();
          if constexpr (!Traits::kRescaleUnderQK) rescale(correction);
          if (Traits::kWaitTilesEarly && i + 1 < steps) wait_tiles();
          probabilities_to_operand(tSrS);
        }
      }

      Barrier::wait(&smem.v_full[v_slot.stage], v_slot.phase);
      turn.wait_turn();
      if constexpr (Traits::kRescaleUnderQK) rescale(correction);
      issue_pv(v_slot.stage);
      // Each warpgroup waits for its turn count+1 times a tile; the second one's last
      // hand-back would have no taker, so it keeps it.
      if (turn.self == 0) turn.pass_turn();
      warpgroup_wait<0>();
      release_v();
      ++q_uses;
    }

    float totals[kRows];
    if constexpr (Traits::kRowSumsByGemm) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) totals[r] = sums_rc(r, 0);
    } else {
      softmax.totals(totals);
    }
    float lse[kRows];
    softmax.finalize(out_rc, lse, Traits::kFp8 ? a.v_descale[head_index] : 1.f, totals);

    // Rows past the query block's valid rows are padding: they get 0 and lse -inf.
    const int q_rows = valid_rows(a, tile.batch, tile.q_block);
    const int row0 = tile.q_block * Traits::kBlockM;
    OutElement* out = static_cast<OutElement*>(a.out) + tile.batch * a.o_batch_stride + tile.head * a.o_head_stride;
    static_assert(decltype(size(tOrO))::value % 2 == 0);
#pragma unroll
    for (int e = 0; e < size(tOrO); e += 2) {
      const int row = get<0>(tOcO(e));
      const int col = get<1>(tOcO(e));
      if (row0 + row >= a.tokens) continue;
      const bool valid = row < q_rows;
      cutlass::Array<OutElement, 2> pair;
      pair[0] = static_cast<OutElement>(valid ? tOrO(e) : 0.f);
      pair[1] = static_cast<OutElement>(valid ? tOrO(e + 1) : 0.f);
      *reinterpret_cast<cutlass::Array<OutElement, 2>*>(out + (row0 + row) * a.o_token_stride + col) = pair;
    }
    if (thread % 4 == 0) {
      float* lse_row = a.lse + head_index * a.tokens + row0;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int row = get<0>(score_coords(r, 0));
        if (row0 + row < a.tokens) lse_row[row] = row < q_rows ? lse[r] : -INFINITY;
      }
    }
  }
}

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
