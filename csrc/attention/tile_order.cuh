// The attention kernel's schedule: per (batch, head), its query blocks longest list first.
#pragma once

#include <cuda_runtime.h>

#include "draftattn/sparse_attn.h"

namespace draftattn::sm90 {

// Zeroes the tile counter (workspace[0]) and writes the order to workspace[1 ...]:
// entry (batch * heads + head) * num_blocks + rank is the query block of that rank.
cudaError_t order_tiles_longest_first(const SparseAttnParams& args, cudaStream_t stream);

}  // namespace draftattn::sm90
