// The producer warp of the attention kernel: takes tiles from the global counter, posts them
// to the consumers, and streams each tile's Q and its listed K, V blocks through TMA into
// the shared-memory rings, with each step's valid rows and K factors beside its K tiles.
#pragma once

#include <cute/tensor.hpp>

#include "block_list.cuh"
#include "kernel_params.cuh"
#include "kernel_traits.cuh"
#include "tile_pipeline.cuh"

namespace draftattn::sm90 {
using namespace cute;

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

}  // namespace draftattn::sm90
