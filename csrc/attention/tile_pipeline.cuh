// What the producer warp and the consumer warpgroups of the attention kernel share: tiles
// and their order, positions in the shared-memory rings, and the mailbox that hands each
// tile number from the producer to the consumers.
#pragma once

#include <cutlass/arch/barrier.h>

namespace draftattn::sm90 {
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

}  // namespace draftattn::sm90
