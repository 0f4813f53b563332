// Reading a query block's kv block list inside the kernel. A warp loads 32 list entries
// with one coalesced access, one batch ahead of use, and hands them out by shuffle, so
// no step waits on a dependent global load.
#pragma once

#include <cstdint>

#include "kernel_params.cuh"

namespace draftattn::sm90 {

struct BlockList {
  const int32_t* entries;
  int count;
};

template <class Params>
__device__ __forceinline__ BlockList block_list_of(const Params& p, int batch, int head, int q_block) {
  const SparseAttnParams& a = p.args;
  const int64_t count_at = batch * a.cnt_batch_stride + head * a.cnt_head_stride + q_block;
  int count = a.kv_counts[count_at];
  count = count < 0 ? 0 : (count > a.max_blocks ? a.max_blocks : count);
  const int32_t* entries =
      a.kv_indices + batch * a.idx_batch_stride + head * a.idx_head_stride + q_block * a.idx_block_stride;
  return {entries, count};
}

// Valid rows of a block in one batch entry: its block_lens entry, cut at the sequence end;
// 0 for an index outside [0, num_blocks), so such an entry contributes nothing.
__device__ __forceinline__ int valid_rows(const SparseAttnParams& a, int batch, int block) {
  if (block < 0 || block >= a.num_blocks) return 0;
  const int to_end = a.tokens - block * 128;
  const int len = a.block_lens != nullptr ? a.block_lens[batch * a.lens_batch_stride + block] : 128;
  return len < to_end ? len : to_end;
}

// Walks a list in order, j = 0, 1, 2, ...; every lane of the warp must call at(j) with the
// same j.
struct WarpListCursor {
  BlockList list;
  int lane;
  int current;
  int next;

  __device__ __forceinline__ explicit WarpListCursor(BlockList list_) : list(list_), lane(threadIdx.x % 32) {
    current = load(0);
    next = load(32);
  }

  __device__ __forceinline__ int load(int start) const {
    const int at = start + lane;
    return at < list.count ? list.entries[at] : 0;
  }

  __device__ __forceinline__ int at(int j) {
    if ((j & 31) == 0 && j > 0) {
      current = next;
      next = load(j + 32);
    }
    return __shfl_sync(0xffffffff, current, j & 31);
  }
};

}  // namespace draftattn::sm90
