// Reading a query block's kv block list inside the kernel. A warp loads 32 list entries
// with one coalesced access and hands them out by shuffle, so no step waits on a
// dependent global load.
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
  const int64_t count_at = batch * p.cnt_batch_stride + head * p.cnt_head_stride + q_block;
  int count = p.kv_counts[count_at];
  count = count < 0 ? 0 : (count > p.max_blocks ? p.max_blocks : count);
  const int32_t* entries =
      p.kv_indices + batch * p.idx_batch_stride + head * p.idx_head_stride + q_block * p.idx_block_stride;
  return {entries, count};
}

// Valid rows of a block: its block_lens entry, cut at the sequence end; 0 for an index
// outside [0, num_blocks), so such an entry contributes nothing.
template <class Params>
__device__ __forceinline__ int valid_rows(const Params& p, int block) {
  if (block < 0 || block >= p.num_blocks) return 0;
  const int to_end = p.tokens - block * 128;
  const int len = p.block_lens != nullptr ? p.block_lens[block] : 128;
  return len < to_end ? len : to_end;
}

}  // namespace draftattn::sm90
