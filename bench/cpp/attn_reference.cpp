#include "attn_reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "draftattn/sparse_attn.h"

namespace bench {
namespace {

constexpr int kB = draftattn::kBlockSize;

int valid_rows(const HostAttention& p, int block) {
  const int len = p.block_lens->empty() ? kB : (*p.block_lens)[block];
  return std::min(len, p.tokens - block * kB);
}

struct Sums {
  double err2 = 0, ref2 = 0;
};

// One query row against its list; accumulates into `result` and `sums`.
void check_row(const HostAttention& p, const std::vector<float>& out, const std::vector<float>& lse, int b, int h,
               int q_block, int row, VerifyResult& result, Sums& sums) {
  const int D = p.head_dim;
  const int64_t token = int64_t(q_block) * kB + row;
  const int64_t row_at = ((int64_t(b) * p.tokens + token) * p.heads + h) * D;
  const float* o = &out[row_at];
  const float o_lse = lse[(int64_t(b) * p.heads + h) * p.tokens + token];
  ++result.rows;

  const int64_t list_row = (int64_t(b) * p.heads + h) * p.lists->num_blocks + q_block;
  const int count = p.lists->counts[list_row];
  const int32_t* list = &p.lists->indices[list_row * p.lists->max_blocks];
  if (row >= valid_rows(p, q_block) || count == 0) {  // padding row or empty list
    bool zero = o_lse == -INFINITY;
    for (int d = 0; d < D; ++d) zero = zero && o[d] == 0.f;
    result.wrong_empty += !zero;
    return;
  }

  // Scores of every key the list reaches, then softmax in double: the reference should be
  // far more exact than what it judges.
  const float* qrow = &(*p.q)[row_at];
  std::vector<double> score;
  std::vector<int64_t> key_at;
  for (int e = 0; e < count; ++e) {
    const int kv = list[e];
    for (int c = 0; c < valid_rows(p, kv); ++c) {
      const int64_t at = ((int64_t(b) * p.tokens + int64_t(kv) * kB + c) * p.heads + h) * D;
      double dot = 0;
      for (int d = 0; d < D; ++d) dot += double(qrow[d]) * (*p.k)[at + d];
      score.push_back(dot * p.scale);
      key_at.push_back(at);
    }
  }
  const double max = *std::max_element(score.begin(), score.end());
  double denom = 0;
  for (double& s : score) denom += (s = std::exp(s - max));
  std::vector<double> ref(D, 0.0);
  for (size_t j = 0; j < score.size(); ++j)
    for (int d = 0; d < D; ++d) ref[d] += score[j] * (*p.v)[key_at[j] + d];

  bool finite = !std::isnan(o_lse) && std::isfinite(o_lse);
  for (int d = 0; d < D; ++d) {
    finite = finite && std::isfinite(o[d]);
    const double r = ref[d] / denom, err = double(o[d]) - r;
    result.max_abs = std::max(result.max_abs, std::fabs(err));
    sums.err2 += err * err;
    sums.ref2 += r * r;
  }
  result.not_finite += !finite;
  result.lse_max_abs = std::max(result.lse_max_abs, std::fabs(double(o_lse) - (max + std::log(denom))));
}

}  // namespace

VerifyResult verify_sample(const HostAttention& p, const std::vector<float>& out, const std::vector<float>& lse,
                           int blocks_per_head, std::mt19937_64& rng) {
  VerifyResult result;
  Sums sums;
  const int nb = p.lists->num_blocks;
  std::vector<int> blocks(nb);
  for (int b = 0; b < p.batch; ++b) {
    for (int h = 0; h < p.heads; ++h) {
      std::iota(blocks.begin(), blocks.end(), 0);
      std::shuffle(blocks.begin(), blocks.end(), rng);
      for (int i = 0; i < std::min(blocks_per_head, nb); ++i) {
        const int rows = std::min(kB, p.tokens - blocks[i] * kB);
        for (int r = 0; r < rows; ++r) check_row(p, out, lse, b, h, blocks[i], r, result, sums);
      }
    }
  }
  result.rel_l2 = sums.ref2 > 0 ? std::sqrt(sums.err2 / sums.ref2) : std::sqrt(sums.err2);
  return result;
}

}  // namespace bench
