// In-place row softmax of the draft logits, one read and one write of the map: the row max
// and sum come from the logits kernel's per-tile partials, combined in tile order
// (max = max_t m_t, sum = sum_t s_t exp(m_t - max)), so rows with equal logits get equal
// statistics and bit-equal probabilities, and ties across rows stay ties. The division is
// IEEE (__fdiv_rn) even under --use_fast_math.
//
// For the global rule the same pass counts and picks the first radix digit of the
// probabilities (radix_digits.cuh). Each CTA takes a run of whole rows of one head; entries
// are walked flat (coalesced whatever S is), their row found by a multiply-high division.
#include <algorithm>
#include <cfloat>

#include "draft_steps.h"
#include "fast_div.cuh"
#include "float_key.cuh"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = kRadixThreads;
constexpr int kLoadsInFlight = 4;
constexpr int kMaxRows = 64;
constexpr int kEntriesPerCta = 8192;

template <bool kHistogram>
__global__ void __launch_bounds__(kThreads)
    draft_softmax_kernel(float* scores, const float2* partials, int S, int tiles, int64_t head_stride,
                         int rows_per_cta, FastDiv row_of, HeadSelectState* states, uint32_t keep) {
  __shared__ float row_max[kMaxRows], row_sum[kMaxRows];
  __shared__ uint32_t hist[kHistogram ? kDigitBins : 1];

  const int64_t head = blockIdx.y;
  const int row0 = blockIdx.x * rows_per_cta;
  const int rows = min(rows_per_cta, S - row0);
  for (int r = threadIdx.x; r < rows; r += kThreads) {
    const float2* p = partials + (head * S + row0 + r) * tiles;
    float m = -FLT_MAX;
    for (int t = 0; t < tiles; ++t) m = fmaxf(m, p[t].x);
    float sum = 0.f;
    for (int t = 0; t < tiles; ++t) sum += p[t].y * expf(p[t].x - m);
    row_max[r] = m;
    row_sum[r] = sum;
  }
  if (kHistogram) clear_histogram(hist, kDigitBins);
  __syncthreads();

  float* x = scores + head * head_stride + int64_t(row0) * S;
  const uint32_t n = uint32_t(rows) * S;
  const DigitPass pass = digit_pass(0);
  for (uint32_t base = 0; base < n; base += kThreads * kLoadsInFlight) {
    float v[kLoadsInFlight];
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const uint32_t e = base + u * kThreads + threadIdx.x;
      v[u] = e < n ? x[e] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const uint32_t e = base + u * kThreads + threadIdx.x;
      const bool valid = e < n;
      if (valid) {
        const uint32_t r = row_of.div(e);
        v[u] = __fdiv_rn(expf(v[u] - row_max[r]), row_sum[r]);
        x[e] = v[u];
      }
      if (kHistogram) count_key(hist, valid, order_key(v[u]), 0u, pass);
    }
  }

  if (!kHistogram || !flush_and_arrive(hist, states + head, 0, gridDim.x)) return;
  finish_digit<kThreads>(states + head, 0, DigitResult{0u, keep, 0u});
}

}  // namespace

cudaError_t launch_draft_softmax(const DraftSelectArgs& a, const DraftWorkspace& w, int64_t keep,
                                 cudaStream_t stream) {
  const int S = a.num_regions;
  const int rows_per_cta = std::max(1, std::min(std::min(S, kMaxRows), kEntriesPerCta / S));
  const dim3 grid((S + rows_per_cta - 1) / rows_per_cta, a.batch_heads);
  const FastDiv row_of = FastDiv::make(uint32_t(S));
  const int tiles = draft_column_tiles(S);
  if (keep > 0)
    draft_softmax_kernel<true><<<grid, kThreads, 0, stream>>>(w.scores, w.row_partials, S, tiles, w.head_stride,
                                                              rows_per_cta, row_of, w.states, uint32_t(keep));
  else
    draft_softmax_kernel<false><<<grid, kThreads, 0, stream>>>(w.scores, w.row_partials, S, tiles, w.head_stride,
                                                               rows_per_cta, row_of, w.states, 0u);
  return cudaGetLastError();
}

}  // namespace draftattn
