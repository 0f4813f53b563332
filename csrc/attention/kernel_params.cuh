// What one launch of the attention kernel receives (by value, as a __grid_constant__).
#pragma once

#include <cstdint>

namespace draftattn::sm90 {

template <class Traits>
struct KernelParams {
  typename Traits::TmaQ tma_q;
  typename Traits::TmaK tma_k;
  typename Traits::TmaV tma_v;

  typename Traits::OutElement* out;
  int64_t o_batch_stride, o_token_stride, o_head_stride;
  float* lse;  // (batch, heads, tokens)

  const int32_t* kv_indices;
  const int32_t* kv_counts;
  const int32_t* block_lens;  // nullable
  int64_t idx_batch_stride, idx_head_stride, idx_block_stride;
  int64_t cnt_batch_stride, cnt_head_stride;
  int max_blocks;

  // fp8 only: q, k dequantisation factors per (batch, head, block), v's per (batch, head).
  const float* q_descale;
  const float* k_descale;
  const float* v_descale;

  int batch, tokens, heads, num_blocks;
  int num_tiles;      // num_blocks * heads * batch
  int* tile_counter;  // zero at launch; CTAs take tiles gridDim.x, gridDim.x + 1, ...
  float scale_log2;   // softmax scale * log2(e): the kernel works with exp2
};

}  // namespace draftattn::sm90
