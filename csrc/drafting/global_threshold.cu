// The paper's rule: per head keep the `keep` largest of all S*S draft probabilities, ties
// to the lower flat index i*S + j. Radix select on order keys (radix_digits.cuh), no sort,
// no host sync. The softmax pass fixes key bits 31..20; here
//  1. compact_kernel (many CTAs per head, one read of the map) copies the keys whose top
//     bits match into the head's candidate list (one global atomic per CTA for the offset);
//  2. candidate_select_kernel (one CTA per head) counts bits 19..8 and then 7..0 of the
//     candidates in shared memory, which fixes the key t of the keep-th largest entry and
//     m, the number of entries equal to t that still fit.
// Entries > t are kept, plus the first m entries == t in flat order; per row that is
// row_ties[i] = clamp(m - (entries == t in rows < i), 0, entries == t in row i). When the
// tie is split (rare outside constructed inputs) the same CTA counts the equal entries per
// row in the map, one warp per row.
#include <cub/block/block_scan.cuh>

#include "draft_steps.h"
#include "float_key.cuh"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr int kCompactThreads = kRadixThreads;
constexpr int kLoadsInFlight = 8;
constexpr int kQuadsPerCta = kCompactThreads * kLoadsInFlight;
constexpr int kSelectThreads = 1024;
constexpr uint32_t kFirstDigitMask = 0xfff00000u;

__global__ void __launch_bounds__(kCompactThreads) compact_kernel(const float* scores, int64_t head_stride, int S,
                                                                   HeadSelectState* states, uint32_t* candidates) {
  using Scan = cub::BlockScan<int, kCompactThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ uint32_t base;
  const int64_t head = blockIdx.y;
  HeadSelectState* st = states + head;
  const float* head_scores = scores + head * head_stride;
  const uint32_t prefix = st->prefix;
  const int64_t entries = int64_t(S) * S;
  const int64_t quads = entries / 4;
  const float4* v4 = reinterpret_cast<const float4*>(head_scores);
  const int64_t begin = int64_t(blockIdx.x) * kQuadsPerCta;

  uint32_t keys[kLoadsInFlight * 4];
#pragma unroll
  for (int u = 0; u < kLoadsInFlight; ++u) {
    const int64_t i = begin + u * kCompactThreads + threadIdx.x;
    const float4 v = i < quads ? v4[i] : make_float4(-1.f, -1.f, -1.f, -1.f);  // key of -1 never matches
    keys[4 * u + 0] = order_key(v.x);
    keys[4 * u + 1] = order_key(v.y);
    keys[4 * u + 2] = order_key(v.z);
    keys[4 * u + 3] = order_key(v.w);
  }
  // The last entries % 4 entries go to thread 0 of CTA 0.
  uint32_t tail[3];
#pragma unroll
  for (int e = 0; e < 3; ++e) {
    const int64_t i = quads * 4 + e;
    tail[e] = blockIdx.x == 0 && threadIdx.x == 0 && i < entries ? order_key(head_scores[i]) : order_key(-1.f);
  }
  int count = 0;
#pragma unroll
  for (int e = 0; e < kLoadsInFlight * 4; ++e) count += (keys[e] & kFirstDigitMask) == prefix;
#pragma unroll
  for (int e = 0; e < 3; ++e) count += (tail[e] & kFirstDigitMask) == prefix;
  int offset, total;
  Scan(scan).ExclusiveSum(count, offset, total);
  if (threadIdx.x == 0 && total > 0) base = atomicAdd(&st->candidates, uint32_t(total));
  __syncthreads();
  if (count == 0) return;
  uint32_t* out = candidates + head * entries + base + offset;
#pragma unroll
  for (int e = 0; e < kLoadsInFlight * 4; ++e)
    if ((keys[e] & kFirstDigitMask) == prefix) *out++ = keys[e];
#pragma unroll
  for (int e = 0; e < 3; ++e)
    if ((tail[e] & kFirstDigitMask) == prefix) *out++ = tail[e];
}

__device__ void write_row_thresholds(const float* head_scores, int S, uint32_t t, int m, bool split,
                                     uint32_t* row_key, int32_t* row_ties) {
  if (!split) {  // every entry equal to t is kept
    for (int i = threadIdx.x; i < S; i += kSelectThreads) {
      row_key[i] = t;
      row_ties[i] = S;
    }
    return;
  }
  const int lane = threadIdx.x % 32;
  for (int i = threadIdx.x / 32; i < S; i += kSelectThreads / 32) {
    int equal = 0;
    for (int j0 = 0; j0 < S; j0 += 32) {
      const int j = j0 + lane;
      equal += __popc(__ballot_sync(0xffffffffu, j < S && order_key(head_scores[int64_t(i) * S + j]) == t));
    }
    if (lane == 0) row_ties[i] = equal;
  }
  __syncthreads();
  using Scan = cub::BlockScan<int, kSelectThreads>;
  __shared__ typename Scan::TempStorage scan;
  int before = 0;
  for (int i0 = 0; i0 < S; i0 += kSelectThreads) {
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

__global__ void __launch_bounds__(kSelectThreads)
    candidate_select_kernel(const float* scores, int64_t head_stride, int S, const HeadSelectState* states,
                            const uint32_t* candidates, uint32_t* row_key, int32_t* row_ties) {
  __shared__ uint32_t hist[kDigitBins];
  const int64_t head = blockIdx.x;
  const HeadSelectState* st = states + head;
  const uint32_t n = st->candidates;
  const uint32_t* keys = candidates + head * int64_t(S) * S;
  uint32_t prefix = st->prefix, want = st->remaining, equal_total = st->equal_total;

  for (int p = 1; p <= 2; ++p) {
    const DigitPass pass = digit_pass(p);
    for (int b = threadIdx.x; b < pass.bins; b += kSelectThreads) hist[b] = 0;
    __syncthreads();
    for (uint32_t i0 = 0; i0 < n; i0 += kSelectThreads * kLoadsInFlight) {
      uint32_t key[kLoadsInFlight];  // several loads in flight: the list is read from L2
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u) {
        const uint32_t i = i0 + u * kSelectThreads + threadIdx.x;
        key[u] = i < n ? keys[i] : 0u;
      }
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u)
        count_key(hist, i0 + u * kSelectThreads + threadIdx.x < n, key[u], prefix, pass);
    }
    __syncthreads();
    const Digit d = pick_digit<kSelectThreads>(pass.bins, want, [&](int b) { return hist[b]; });
    prefix |= d.bin << pass.shift;
    want = d.rank;
    equal_total = d.count;
    __syncthreads();  // everyone has the digit before the histogram is cleared
  }
  write_row_thresholds(scores + head * head_stride, S, prefix, int(want), want != equal_total, row_key + head * S,
                       row_ties + head * S);
}

}  // namespace

cudaError_t launch_global_threshold(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream) {
  const int64_t quads = int64_t(a.num_regions) * a.num_regions / 4;
  const dim3 grid(unsigned(std::max<int64_t>(1, (quads + kQuadsPerCta - 1) / kQuadsPerCta)), a.batch_heads);
  auto* states = reinterpret_cast<HeadSelectState*>(a.select_state);
  compact_kernel<<<grid, kCompactThreads, 0, stream>>>(a.scores, head_stride, a.num_regions, states, a.candidates);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  candidate_select_kernel<<<a.batch_heads, kSelectThreads, 0, stream>>>(a.scores, head_stride, a.num_regions, states,
                                                                        a.candidates, a.row_key, a.row_ties);
  return cudaGetLastError();
}

}  // namespace draftattn
