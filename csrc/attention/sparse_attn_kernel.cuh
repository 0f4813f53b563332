// Warp-specialized Hopper block-sparse attention: one CTA per (query block, head, batch).
// Warpgroup 0 (one warp) streams K and V tiles of the listed kv blocks through TMA into a
// multi-stage shared-memory ring; warpgroups 1 and 2 each own 64 query rows and run
// S = Q K^T, the online softmax and O += P V on the tensor cores (wgmma).
//
// Two overlaps keep the tensor cores busy while exponentials are computed:
// - inside a warpgroup, step j issues S_j = Q K_j and O += P_{j-1} V_{j-1} together and
//   runs the softmax of S_j while the PV GEMM is still in flight;
// - across the two warpgroups, GEMM issue is a critical section handed back and forth
//   through two named barriers (ping-pong), so one warpgroup's softmax runs under the
//   other's GEMMs.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/array.h>

#include "block_list.cuh"
#include "kernel_params.cuh"
#include "kernel_traits.cuh"
#include "online_softmax.cuh"

namespace draftattn::sm90 {
using namespace cute;
using Barrier = cutlass::arch::ClusterTransactionBarrier;

template <class Traits>
__device__ __forceinline__ void produce(const KernelParams<Traits>& p, typename Traits::SharedStorage& smem,
                                        BlockList list, int q_block, int head, int batch) {
  using BlockM = typename Traits::BlockM;
  using BlockN = typename Traits::BlockN;
  using Dim = typename Traits::Dim;
  const int lane = threadIdx.x % 32;

  Tensor sQ = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutKV{});
  Tensor sV = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutKV{});
  const auto gmem_shape = make_shape(p.tokens, Dim{}, p.heads, p.batch);
  Tensor gQ = local_tile(p.tma_q.get_tma_tensor(gmem_shape)(_, _, head, batch), Shape<BlockM, Dim>{},
                         make_coord(q_block, _0{}));
  Tensor gK = local_tile(p.tma_k.get_tma_tensor(gmem_shape)(_, _, head, batch), Shape<BlockN, Dim>{},
                         make_coord(_, _0{}));
  Tensor gV = local_tile(p.tma_v.get_tma_tensor(gmem_shape)(_, _, head, batch), Shape<BlockN, Dim>{},
                         make_coord(_, _0{}));
  auto [tQg, tQs] = tma_partition(p.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gQ));
  auto [tKg, tKs] = tma_partition(p.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
  auto [tVg, tVs] = tma_partition(p.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gV));

  if (lane == 0) {
    Barrier::arrive_and_expect_tx(&smem.q_full, Traits::kTileBytes);
    copy(p.tma_q.with(smem.q_full), tQg, tQs);
  }

  WarpListCursor blocks(list, [](int entry) { return entry; });
  int stage = 0;
  uint32_t phase = 1;  // a fresh "empty" barrier counts as released once
  for (int j = 0; j < list.count; ++j) {
    const int kv_block = blocks.at(j);
    if (lane == 0) {
      Barrier::wait(&smem.k_empty[stage], phase);
      Barrier::arrive_and_expect_tx(&smem.k_full[stage], Traits::kTileBytes);
      copy(p.tma_k.with(smem.k_full[stage]), tKg(_, kv_block), tKs(_, stage));
      Barrier::wait(&smem.v_empty[stage], phase);
      Barrier::arrive_and_expect_tx(&smem.v_full[stage], Traits::kTileBytes);
      copy(p.tma_v.with(smem.v_full[stage]), tVg(_, kv_block), tVs(_, stage));
    }
    __syncwarp();
    if (++stage == Traits::kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
}

// Hands the right to issue GEMMs back and forth between the two consumer warpgroups.
struct PingPong {
  static constexpr int kFirstBarrier = 1;  // 0 is __syncthreads
  int self;

  __device__ __forceinline__ void wait_turn() const {
    cutlass::arch::NamedBarrier::sync(256, kFirstBarrier + self);
  }
  __device__ __forceinline__ void pass_turn() const {
    cutlass::arch::NamedBarrier::arrive(256, kFirstBarrier + (self ^ 1));
  }
};

template <class Traits>
__device__ __forceinline__ void consume(const KernelParams<Traits>& p, typename Traits::SharedStorage& smem,
                                        BlockList list, int q_block, int head, int batch) {
  using Element = typename Traits::Element;
  using BlockM = typename Traits::BlockM;
  using BlockN = typename Traits::BlockN;
  using Dim = typename Traits::Dim;
  const int thread = threadIdx.x - 128;  // 0 .. kConsumerThreads-1

  Tensor sQ = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutKV{});
  Tensor sVt = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutVt{});

  typename Traits::MmaQK mma_qk;
  typename Traits::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(thread);
  auto thr_pv = mma_pv.get_thread_slice(thread);
  Tensor tSrQ = thr_qk.partition_fragment_A(sQ);
  Tensor tSrK = thr_qk.partition_fragment_B(sK);
  Tensor tOrV = thr_pv.partition_fragment_B(sVt);
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<BlockM, BlockN>{});
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<BlockM, Dim>{});
  Tensor tScS = thr_qk.partition_C(make_identity_tensor(Shape<BlockM, BlockN>{}));
  Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<BlockM, Dim>{}));
  Tensor scores = make_tensor(tSrS.data(), as_rows_cols(tSrS.layout()));
  Tensor out_rc = make_tensor(tOrO.data(), as_rows_cols(tOrO.layout()));
  Tensor score_coords = make_tensor(tScS.data(), as_rows_cols(tScS.layout()));
  constexpr int kRows = decltype(size<0>(scores))::value;

  // P reuses the score registers' order: for 16-bit inputs the accumulator layout of
  // S equals the register A-operand layout of the PV GEMM, 16 key columns per k-block.
  static_assert(decltype(size<0>(tSrS))::value == 64 && decltype(size<1>(tSrS))::value == 1 &&
                decltype(size<2>(tSrS))::value == 1);
  Tensor tSrP = make_tensor<Element>(tSrS.layout());
  Tensor tOrP = make_tensor(tSrP.data(), Layout<Shape<Shape<_2, _2, _2>, _1, _8>, Stride<Stride<_1, _2, _4>, _0, _8>>{});

  clear(tOrO);
  OnlineSoftmax<kRows> softmax(p.scale_log2);
  float correction[kRows];

  auto issue_qk = [&](int stage) {
    mma_qk.accumulate_ = GMMA::ScaleOut::Zero;
    warpgroup_fence_operand(tSrS);
    warpgroup_arrive();
#pragma unroll
    for (int kb = 0; kb < size<2>(tSrQ); ++kb) {
      gemm(mma_qk, tSrQ(_, _, kb), tSrK(_, _, kb, stage), tSrS);
      mma_qk.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
  };
  auto issue_pv = [&](int stage) {
    warpgroup_fence_operand(tOrO);
    warpgroup_arrive();
#pragma unroll
    for (int kb = 0; kb < size<2>(tOrP); ++kb) gemm(mma_pv, tOrP(_, _, kb), tOrV(_, _, kb, stage), tOrO);
    warpgroup_commit_batch();
  };
  // Scores of a step -> probabilities (fp32, in place); masks the columns past a partial
  // kv block's valid rows first.
  auto softmax_scores = [&](int kv_rows) {
    if (kv_rows < Traits::kBlockN) {
#pragma unroll
      for (int e = 0; e < size(tSrS); ++e) {
        if (get<1>(tScS(e)) >= kv_rows) tSrS(e) = -INFINITY;
      }
    }
    softmax.update(scores, correction);
  };
  auto probabilities_to_operand = [&] {
#pragma unroll
    for (int e = 0; e < size(tSrS); ++e) tSrP(e) = static_cast<Element>(tSrS(e));
  };

  const PingPong turn{thread / 128};
  WarpListCursor kv_rows_of(list, [&p](int entry) { return valid_rows(p, entry); });
  if (list.count > 0) {
    if (turn.self == 1) turn.pass_turn();  // the first warpgroup goes first
    Barrier::wait(&smem.q_full, 0);

    Barrier::wait(&smem.k_full[0], 0);
    turn.wait_turn();
    issue_qk(0);
    turn.pass_turn();
    warpgroup_wait<0>();
    warpgroup_fence_operand(tSrS);
    Barrier::arrive(&smem.k_empty[0]);
    softmax_scores(kv_rows_of.at(0));
    probabilities_to_operand();

    int prev_stage = 0;
    uint32_t prev_phase = 0;
    for (int j = 1; j < list.count; ++j) {
      const int stage = prev_stage + 1 == Traits::kStages ? 0 : prev_stage + 1;
      const uint32_t phase = stage == 0 ? prev_phase ^ 1 : prev_phase;
      const int kv_rows = kv_rows_of.at(j);
      Barrier::wait(&smem.k_full[stage], phase);
      Barrier::wait(&smem.v_full[prev_stage], prev_phase);
      turn.wait_turn();
      issue_qk(stage);
      issue_pv(prev_stage);
      turn.pass_turn();

      warpgroup_wait<1>();  // S_j is ready; P_{j-1} V_{j-1} may still run
      warpgroup_fence_operand(tSrS);
      Barrier::arrive(&smem.k_empty[stage]);
      softmax_scores(kv_rows);

      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      Barrier::arrive(&smem.v_empty[prev_stage]);
      softmax.rescale(out_rc, correction);
      probabilities_to_operand();
      prev_stage = stage;
      prev_phase = phase;
    }

    Barrier::wait(&smem.v_full[prev_stage], prev_phase);
    turn.wait_turn();
    issue_pv(prev_stage);
    // Each warpgroup waits for its turn count+1 times; the second one's last hand-back
    // would have no taker, so it keeps it.
    if (turn.self == 0) turn.pass_turn();
    warpgroup_wait<0>();
    warpgroup_fence_operand(tOrO);
    Barrier::arrive(&smem.v_empty[prev_stage]);
  }

  float lse[kRows];
  softmax.finalize(out_rc, lse);

  // Rows past the query block's valid rows are padding: they get 0 and lse -inf.
  const int q_rows = valid_rows(p, q_block);
  const int row0 = q_block * Traits::kBlockM;
  Element* out = p.out + batch * p.o_batch_stride + head * p.o_head_stride;
  static_assert(decltype(size(tOrO))::value % 2 == 0);
#pragma unroll
  for (int e = 0; e < size(tOrO); e += 2) {
    const int row = get<0>(tOcO(e));
    const int col = get<1>(tOcO(e));
    if (row0 + row >= p.tokens) continue;
    const bool valid = row < q_rows;
    cutlass::Array<Element, 2> pair;
    pair[0] = static_cast<Element>(valid ? tOrO(e) : 0.f);
    pair[1] = static_cast<Element>(valid ? tOrO(e + 1) : 0.f);
    *reinterpret_cast<cutlass::Array<Element, 2>*>(out + (row0 + row) * p.o_token_stride + col) = pair;
  }
  if (thread % 4 == 0) {
    float* lse_row = p.lse + (int64_t(batch) * p.heads + head) * p.tokens + row0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = get<0>(score_coords(r, 0));
      if (row0 + row < p.tokens) lse_row[row] = row < q_rows ? lse[r] : -INFINITY;
    }
  }
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    sparse_attn_kernel(const __grid_constant__ KernelParams<Traits> p) {
  extern __shared__ __align__(1024) char smem_bytes[];
  auto& smem = *reinterpret_cast<typename Traits::SharedStorage*>(smem_bytes);
  const int q_block = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;

  if (threadIdx.x == 0) {
    Barrier::init(&smem.q_full, 1);
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

  const BlockList list = block_list_of(p, batch, head, q_block);
  if (threadIdx.x < 128) {
    cutlass::arch::warpgroup_reg_dealloc<24>();
    if (threadIdx.x < 32 && list.count > 0) produce<Traits>(p, smem, list, q_block, head, batch);
  } else {
    cutlass::arch::warpgroup_reg_alloc<240>();
    consume<Traits>(p, smem, list, q_block, head, batch);
  }
}

}  // namespace draftattn::sm90
