// A consumer warpgroup of the attention kernel: 64 query rows of each tile; S = Q K^T, the
// online softmax and O += P V on the tensor cores, step by step over the tile's kv blocks,
// then the epilogue (output rows and their log-sum-exp).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/array.h>
#include <cutlass/numeric_conversion.h>

#include "block_list.cuh"
#include "kernel_params.cuh"
#include "kernel_traits.cuh"
#include "online_softmax.cuh"
#include "probability_operand.cuh"
#include "score_gemm.cuh"
#include "tile_pipeline.cuh"

namespace draftattn::sm90 {
using namespace cute;

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
    issue_scores(mma_qk, tSrQ, tSrK(_, _, _, stage), accumulator);
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
  using Softmax = OnlineSoftmax<kRows, !Traits::kRowSumsByGemm, Traits::kLinearExp2Per16>;
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
  // The K, the V tiles of the next step (of each ring's current slot).
  auto wait_k = [&] { Barrier::wait(&smem.k_full[k_slot.stage], k_slot.phase); };
  auto wait_v = [&] { Barrier::wait(&smem.v_full[v_slot.stage], v_slot.phase); };
  auto wait_tiles = [&] {
    wait_k();
    wait_v();
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
          wait_k();
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
          wait_v();
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
        wait_k();
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

      wait_v();
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

}  // namespace draftattn::sm90
