#include "block_lists.h"

#include <algorithm>
#include <cmath>

#include "draftattn/sparse_attn.h"

namespace bench {
namespace {

// Writes `k` distinct values of 0..n-1 in ascending order (selection sampling: each value is
// taken with probability still-needed / still-left, which is uniform over all k-subsets).
void sorted_sample(int n, int k, std::mt19937_64& rng, int32_t* out) {
  for (int v = 0, taken = 0; v < n && taken < k; ++v) {
    if (int(rng() % uint64_t(n - v)) < k - taken) out[taken++] = v;
  }
}

}  // namespace

BlockLists random_block_lists(int batch, int heads, int num_blocks, double density, RowSpread spread,
                              std::mt19937_64& rng) {
  BlockLists lists;
  lists.num_blocks = num_blocks;
  const int mean = int(std::clamp<long long>(std::llround(density * num_blocks), density > 0 ? 1 : 0, num_blocks));
  const int widest = std::min(num_blocks, spread == RowSpread::kUniform ? mean : 2 * mean);
  lists.max_blocks = std::max(widest, 1);  // a (.., 0) tensor has no valid strides

  const int64_t rows = int64_t(batch) * heads * num_blocks;
  lists.counts.resize(rows);
  lists.indices.assign(rows * lists.max_blocks, -1);
  std::uniform_int_distribution<int> uneven(0, widest);
  for (int64_t row = 0; row < rows; ++row) {
    const int count = spread == RowSpread::kUniform ? mean : uneven(rng);
    lists.counts[row] = count;
    lists.listed += count;
    sorted_sample(num_blocks, count, rng, &lists.indices[row * lists.max_blocks]);
  }
  return lists;
}

std::vector<int32_t> random_block_lens(int tokens, std::mt19937_64& rng) {
  const int num_blocks = (tokens + draftattn::kBlockSize - 1) / draftattn::kBlockSize;
  std::uniform_int_distribution<int> len(1, draftattn::kBlockSize);
  std::vector<int32_t> lens(num_blocks);
  for (int b = 0; b < num_blocks; ++b) lens[b] = std::min(len(rng), tokens - b * draftattn::kBlockSize);
  return lens;
}

}  // namespace bench
