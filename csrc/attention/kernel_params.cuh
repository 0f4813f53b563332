// What one launch of the attention kernel receives (by value, as a __grid_constant__):
// the caller's arguments plus what the host side derives from them.
#pragma once

#include <cstdint>

#include "draftattn/sparse_attn.h"

namespace draftattn::sm90 {

template <class Traits>
struct KernelParams {
  typename Traits::TmaQ tma_q;
  typename Traits::TmaK tma_k;
  typename Traits::TmaV tma_v;
  SparseAttnParams args;
  int num_tiles;            // num_blocks * heads * batch
  int* tile_counter;        // zero at launch; CTAs take tiles gridDim.x, gridDim.x + 1, ...
  const int32_t* tile_order;  // per (batch, head): its query blocks, longest list first
  float scale_log2;         // softmax scale * log2(e): the kernel works with exp2
};

}  // namespace draftattn::sm90
