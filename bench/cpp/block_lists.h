// Random kv block lists in the layout sparse_attn reads (docs/CONTRACT.md), and random
// partial block lengths.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace bench {

enum class RowSpread {
  kUniform,  // every query block lists the same number of kv blocks
  kUneven,   // counts spread evenly over 0 .. 2x the mean: empty rows and rows twice as long
};

struct BlockLists {
  int num_blocks = 0;
  int max_blocks = 0;            // row length of `indices`
  std::vector<int32_t> indices;  // (batch, heads, num_blocks, max_blocks), ascending, -1 past the count
  std::vector<int32_t> counts;   // (batch, heads, num_blocks)
  int64_t listed = 0;            // sum of counts

  // Fraction of the (q block, kv block) pairs listed: the work the kernel really does.
  double density(int batch, int heads) const {
    return double(listed) / (double(batch) * heads * num_blocks * num_blocks);
  }
};

BlockLists random_block_lists(int batch, int heads, int num_blocks, double density, RowSpread spread,
                              std::mt19937_64& rng);

// Valid rows per block, each uniform in 1..128, the last cut at what `tokens` leaves.
std::vector<int32_t> random_block_lens(int tokens, std::mt19937_64& rng);

}  // namespace bench
