// fp32 host reference of block-sparse attention for a sample of query blocks, compared with
// the kernel's output: exact softmax over the listed kv blocks under the token mask that
// block_lens and the sequence end imply (docs/CONTRACT.md).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "block_lists.h"

namespace bench {

// Host copies, all contiguous fp32: q, k, v, out (batch, tokens, heads, head_dim); lse
// (batch, heads, tokens).
struct HostAttention {
  int batch, tokens, heads, head_dim;
  float scale;
  const std::vector<float>* q;
  const std::vector<float>* k;
  const std::vector<float>* v;
  const BlockLists* lists;
  const std::vector<int32_t>* block_lens;  // empty: every block full up to `tokens`
};

struct VerifyResult {
  int64_t rows = 0;          // query rows compared
  double max_abs = 0;        // output, over rows that attend to something
  double rel_l2 = 0;         // output, ||out - ref|| / ||ref||
  double lse_max_abs = 0;    // log-sum-exp, same rows
  int64_t wrong_empty = 0;   // rows that must be out = 0, lse = -inf and are not
  int64_t not_finite = 0;    // NaN/inf outputs (or NaN lse) in compared rows
};

// Compares `blocks_per_head` random query blocks of every (batch, head) (all of them when the
// sequence has fewer).
VerifyResult verify_sample(const HostAttention& problem, const std::vector<float>& out, const std::vector<float>& lse,
                           int blocks_per_head, std::mt19937_64& rng);

}  // namespace bench
