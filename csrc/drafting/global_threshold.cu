// The paper's rule: per head keep the `keep` largest of all S*S draft probabilities, ties
// to the lower flat index i*S + j (the reference's stable descending sort). Radix select on
// order keys (radix_digits.cuh), no sort, no candidate copies, no host sync. The softmax
// pass fixed digit 0 (key bits 31..20); here
//  1. digit_kernel<1> and digit_kernel<2>: many CTAs per head each read a slice of the map
//     and count digit 1 (bits 19..8), then digit 2 (bits 7..0), of the keys that match the
//     digits so far. After digit 2 the head's state holds the key t of the keep-th largest
//     entry, m = how many entries equal to t are kept, and the count of entries equal to t.
//  2. split_ties_kernel: only when m is less than that count (the equal entries are split;
//     rare outside tied inputs) it counts the entries equal to t per row, one warp per row,
//     and the last CTA of the head turns the counts into
//     row_ties[i] = clamp(m - (entries == t in rows < i), 0, entries == t in row i).
//     Otherwise every CTA returns at once and the emit step keeps all entries equal to t.
#include <algorithm>

#include <cub/block/block_scan.cuh>

#include "draft_steps.h"
#include "float_key.cuh"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = kRadixThreads;
constexpr int kQuadsInFlight = 4;
constexpr int kQuadsPerCta = 8192;  // 32K entries: shared-memory histograms stay dense
constexpr int kTieWarps = kThreads / 32;
constexpr int kTieRowsPerCta = 4 * kTieWarps;

// Counts digit kDigit of the keys in this CTA's quads [begin, begin + kQuadsPerCta) of the
// head's map (entries >= S*S are the head's padding: never counted).
template <int kDigit>
__global__ void __launch_bounds__(kThreads)
    digit_kernel(const float* scores, int64_t head_stride, uint32_t entries, HeadSelectState* states) {
  __shared__ uint32_t hist[kDigitBins];
  const DigitPass pass = digit_pass(kDigit);
  const int64_t head = blockIdx.y;
  HeadSelectState* st = states + head;
  const DigitResult before = st->found[kDigit - 1];
  clear_histogram(hist, pass.bins);
  __syncthreads();

  const float4* quads = reinterpret_cast<const float4*>(scores + head * head_stride);
  const uint32_t num_quads = (entries + 3) / 4;
  const uint32_t begin = blockIdx.x * uint32_t(kQuadsPerCta);
  const uint32_t end = min(num_quads, begin + uint32_t(kQuadsPerCta));
  for (uint32_t base = begin; base < end; base += kThreads * kQuadsInFlight) {
    float4 v[kQuadsInFlight];
#pragma unroll
    for (int u = 0; u < kQuadsInFlight; ++u) {
      const uint32_t q = base + u * kThreads + threadIdx.x;
      v[u] = q < end ? quads[q] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kQuadsInFlight; ++u) {
      const uint32_t e = 4 * (base + u * kThreads + threadIdx.x);
      const float x[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
      for (int c = 0; c < 4; ++c) count_key(hist, e + c < 4 * end && e + c < entries, order_key(x[c]), before.prefix, pass);
    }
  }

  if (!flush_and_arrive(hist, st, kDigit, gridDim.x)) return;
  finish_digit<kThreads>(st, kDigit, before);
}

__global__ void __launch_bounds__(kThreads)
    split_ties_kernel(const float* scores, int64_t head_stride, int S, HeadSelectState* states, int32_t* row_ties) {
  const int64_t head = blockIdx.y;
  HeadSelectState* st = states + head;
  const DigitResult t = st->found[kDigits - 1];
  if (t.remaining == t.equal_total) return;  // every entry equal to t is kept
  const float* head_scores = scores + head * head_stride;
  int32_t* ties = row_ties + head * S;

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int row_end = min(S, int(blockIdx.x + 1) * kTieRowsPerCta);
  for (int i = blockIdx.x * kTieRowsPerCta + warp; i < row_end; i += kTieWarps) {
    int equal = 0;
    for (int j0 = 0; j0 < S; j0 += 32) {
      const int j = j0 + lane;
      equal += __popc(__ballot_sync(0xffffffffu, j < S && order_key(head_scores[int64_t(i) * S + j]) == t.prefix));
    }
    if (lane == 0) ties[i] = equal;
  }
  if (!arrive_last(&st->arrived[kDigits], gridDim.x)) return;

  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  const int keep = int(t.remaining);
  int before = 0;
  for (int i0 = 0; i0 < S; i0 += kThreads) {
    const int i = i0 + threadIdx.x;
    const int equal = i < S ? __ldcg(&ties[i]) : 0;
    int in_chunk, chunk_total;
    Scan(scan).ExclusiveSum(equal, in_chunk, chunk_total);
    if (i < S) ties[i] = max(0, min(equal, keep - (before + in_chunk)));
    before += chunk_total;
    __syncthreads();  // the scan storage is reused by the next chunk
  }
}

}  // namespace

cudaError_t launch_global_threshold(const DraftSelectArgs& a, const DraftWorkspace& w, cudaStream_t stream) {
  const uint32_t entries = uint32_t(int64_t(a.num_regions) * a.num_regions);
  const uint32_t quads = (entries + 3) / 4;
  const dim3 grid((quads + kQuadsPerCta - 1) / kQuadsPerCta, a.batch_heads);
  digit_kernel<1><<<grid, kThreads, 0, stream>>>(w.scores, w.head_stride, entries, w.states);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  digit_kernel<2><<<grid, kThreads, 0, stream>>>(w.scores, w.head_stride, entries, w.states);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const dim3 tie_grid((a.num_regions + kTieRowsPerCta - 1) / kTieRowsPerCta, a.batch_heads);
  split_ties_kernel<<<tie_grid, kThreads, 0, stream>>>(w.scores, w.head_stride, a.num_regions, w.states,
                                                       w.row_ties);
  return cudaGetLastError();
}

}  // namespace draftattn
