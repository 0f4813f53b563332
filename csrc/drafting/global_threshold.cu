// The paper's rule: per head keep the `keep` largest of all S*S draft probabilities, ties
// to the lower flat index i*S + j. Radix select on order keys (radix_digits.cuh), no sort,
// no host sync: the softmax pass histograms key bits 31..20, the two passes here bits 19..8
// and 7..0, each over the whole map with many CTAs per head. That fixes the key t of the
// keep-th largest entry and m, the number of entries equal to t that still fit. Entries > t
// are kept, plus the first m entries == t in flat order; per row that is row_ties[i] =
// clamp(m - (entries == t in rows < i), 0, entries == t in row i).
//
// The last CTA of the final pass writes the per-row (t, ties). When the tie is split (rare
// outside constructed inputs) it counts the equal entries per row itself, one warp per row.
#include <cub/block/block_scan.cuh>

#include "draft_steps.h"
#include "float_key.cuh"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = kRadixThreads;
constexpr int kLoadsInFlight = 8;
constexpr int kQuadsPerCta = kThreads * kLoadsInFlight;

__device__ void write_row_thresholds(const float* head_scores, int S, const HeadSelectState* st, uint32_t* row_key,
                                     int32_t* row_ties) {
  // Written by this CTA's pick_digit: read past L1, which may hold the pass's starting prefix.
  const uint32_t t = __ldcg(&st->prefix);
  const int m = int(__ldcg(&st->remaining));
  if (m == int(__ldcg(&st->equal_total))) {  // every entry equal to t is kept: no tie is split
    for (int i = threadIdx.x; i < S; i += kThreads) {
      row_key[i] = t;
      row_ties[i] = S;
    }
    return;
  }
  const int lane = threadIdx.x % 32;
  for (int i = threadIdx.x / 32; i < S; i += kThreads / 32) {
    int equal = 0;
    for (int j0 = 0; j0 < S; j0 += 32) {
      const int j = j0 + lane;
      equal += __popc(__ballot_sync(0xffffffffu, j < S && order_key(head_scores[int64_t(i) * S + j]) == t));
    }
    if (lane == 0) row_ties[i] = equal;
  }
  __syncthreads();
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  int before = 0;
  for (int i0 = 0; i0 < S; i0 += kThreads) {
    const int i = i0 + threadIdx.x;
    const int equal = i < S ? row_ties[i] : 0;
    int in_chunk, chunk_total;
    Scan(scan).ExclusiveSum(equal, in_chunk, chunk_total);
    if (i < S) {
      row_key[i] = t;
      row_ties[i] = max(0, min(equal, m - (before + in_chunk)));
    }
    before += chunk_total;
    __syncthreads();  // scan storage is reused by the next chunk
  }
}

// Digit pass 1 or 2 over one head's map, 16-byte loads; the last CTA picks the digit.
__global__ void __launch_bounds__(kThreads) radix_pass_kernel(const float* scores, int64_t head_stride, int S,
                                                              int pass_index, HeadSelectState* states,
                                                              uint32_t* row_key, int32_t* row_ties) {
  __shared__ uint32_t hist[kDigitBins];
  const int64_t head = blockIdx.y;
  HeadSelectState* st = states + head;
  const float* head_scores = scores + head * head_stride;
  const DigitPass pass = digit_pass(pass_index);
  const uint32_t prefix = st->prefix;
  clear_histogram(hist, pass.bins);
  __syncthreads();

  const int64_t entries = int64_t(S) * S;
  const int64_t quads = entries / 4;
  const float4* v4 = reinterpret_cast<const float4*>(head_scores);
  const int64_t begin = int64_t(blockIdx.x) * kQuadsPerCta;
  float4 v[kLoadsInFlight];
#pragma unroll
  for (int u = 0; u < kLoadsInFlight; ++u) {
    const int64_t i = begin + u * kThreads + threadIdx.x;
    v[u] = i < quads ? v4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int u = 0; u < kLoadsInFlight; ++u) {
    const bool ok = begin + u * kThreads + threadIdx.x < quads;
    count_key(hist, ok, order_key(v[u].x), prefix, pass);
    count_key(hist, ok, order_key(v[u].y), prefix, pass);
    count_key(hist, ok, order_key(v[u].z), prefix, pass);
    count_key(hist, ok, order_key(v[u].w), prefix, pass);
  }
  // The last entries % 4 entries (fewer than a warp) go to the first warp of CTA 0.
  if (blockIdx.x == 0 && threadIdx.x < 32) {
    const int64_t i = quads * 4 + threadIdx.x;
    count_key(hist, i < entries, i < entries ? order_key(head_scores[i]) : 0u, prefix, pass);
  }

  if (!flush_and_arrive(hist, st, pass_index, pass.bins, gridDim.x)) return;
  pick_digit(st, pass_index, __ldcg(&st->remaining));
  if (pass_index == kNumDigitPasses - 1) write_row_thresholds(head_scores, S, st, row_key + head * S, row_ties + head * S);
}

}  // namespace

cudaError_t launch_global_threshold(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream) {
  const int64_t quads = int64_t(a.num_regions) * a.num_regions / 4;
  const dim3 grid(unsigned(std::max<int64_t>(1, (quads + kQuadsPerCta - 1) / kQuadsPerCta)), a.batch_heads);
  auto* states = reinterpret_cast<HeadSelectState*>(a.select_state);
  for (int p = 1; p < kNumDigitPasses; ++p) {
    radix_pass_kernel<<<grid, kThreads, 0, stream>>>(a.scores, head_stride, a.num_regions, p, states, a.row_key,
                                                     a.row_ties);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace draftattn
