// The paper's rule: per head keep the `keep` largest of all S*S draft probabilities, ties
// to the lower flat index i*S + j. Radix select on order keys, no sort, no host sync:
// three histogram passes (key bits 31..20, 19..8, 7..0) fix the key t of the keep-th
// largest entry and m, the number of entries equal to t that still fit. Entries > t are
// kept, plus the first m entries == t in flat order; per row that is row_ties[i] =
// clamp(m - (entries == t in rows < i), 0, entries == t in row i).
//
// One 8-CTA cluster per head: each CTA histograms 1/8 of the entries into its own shared
// memory, and after a cluster barrier every CTA sums the eight histograms through
// distributed shared memory and finds the same digit, so no CTA has to broadcast.
#include <cooperative_groups.h>
#include <cub/block/block_scan.cuh>

#include "draft_steps.h"
#include "float_key.cuh"

namespace draftattn {
namespace {

namespace cg = cooperative_groups;

constexpr int kCluster = 8;
constexpr int kThreads = 512;
constexpr int kBins = 4096;
constexpr int kLoadsInFlight = 4;
constexpr int kNoBin = -1;

struct Pass {
  int shift;
  uint32_t digit_mask;
};
constexpr int kNumPasses = 3;
__device__ inline Pass pass_of(int p) { return p == 0 ? Pass{20, 0xfffu} : p == 1 ? Pass{8, 0xfffu} : Pass{0, 0xffu}; }

using Scan = cub::BlockScan<int, kThreads>;

struct Shared {
  int hist[kBins];
  typename Scan::TempStorage scan;
  uint32_t prefix;  // key bits fixed so far
  int remaining;    // rank of the wanted entry among those matching `prefix`
  int equal_total;  // after the last pass: entries == t in the whole head
  int cta_equal;    // entries == t in this CTA's rows
};

// Adds one key to the histogram; all 32 lanes call it together. Lanes with the same bin
// merge into one shared-memory atomic (most entries share a few top-bit bins).
__device__ inline void count_key(int* hist, bool valid, uint32_t key, uint32_t prefix, uint32_t prefix_mask,
                                 const Pass& pass) {
  const int bin = valid && (key & prefix_mask) == prefix ? int((key >> pass.shift) & pass.digit_mask) : kNoBin;
  const unsigned same = __match_any_sync(0xffffffffu, bin);
  if (bin != kNoBin && (threadIdx.x % 32) == __ffs(same) - 1) atomicAdd(&hist[bin], __popc(same));
}

// Histograms this CTA's share [begin, end) of the head's entries, 16-byte loads.
__device__ void histogram_slice(int* hist, const float* head, int64_t begin4, int64_t end4, int64_t tail_begin,
                                int64_t tail_end, uint32_t prefix, uint32_t prefix_mask, const Pass& pass) {
  const float4* v4 = reinterpret_cast<const float4*>(head);
  for (int64_t i0 = begin4; i0 < end4; i0 += int64_t(kThreads) * kLoadsInFlight) {
    float4 v[kLoadsInFlight];
    bool ok[kLoadsInFlight];
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      const int64_t i = i0 + u * kThreads + threadIdx.x;
      ok[u] = i < end4;
      v[u] = ok[u] ? v4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) {
      count_key(hist, ok[u], order_key(v[u].x), prefix, prefix_mask, pass);
      count_key(hist, ok[u], order_key(v[u].y), prefix, prefix_mask, pass);
      count_key(hist, ok[u], order_key(v[u].z), prefix, prefix_mask, pass);
      count_key(hist, ok[u], order_key(v[u].w), prefix, prefix_mask, pass);
    }
  }
  // The last N % 4 entries (fewer than one warp) go through the scalar path.
  const int64_t i = tail_begin + threadIdx.x % 32;
  if (threadIdx.x < 32 && tail_begin < tail_end)
    count_key(hist, i < tail_end, i < tail_end ? order_key(head[i]) : 0u, prefix, prefix_mask, pass);
}

// All CTAs of the cluster run this on the summed histograms and reach the same digit.
// Thread t owns bins [kBins - 4(t+1), kBins - 4t), so an exclusive scan counts entries above.
__device__ void pick_digit(Shared& sh, cg::cluster_group& cluster, const Pass& pass) {
  constexpr int kPer = kBins / kThreads;
  const int top = kBins - kPer * threadIdx.x - 1;
  int count[kPer];
  int mine = 0;
#pragma unroll
  for (int b = 0; b < kPer; ++b) {
    count[b] = 0;
    for (int r = 0; r < kCluster; ++r) count[b] += cluster.map_shared_rank(sh.hist, r)[top - b];
    mine += count[b];
  }
  int above;
  Scan(sh.scan).ExclusiveSum(mine, above);
  const int want = sh.remaining;
  __syncthreads();  // every thread has read `remaining`
  if (above < want && want <= above + mine) {
    for (int b = 0; b < kPer; ++b) {
      if (above + count[b] >= want) {
        sh.prefix |= uint32_t(top - b) << pass.shift;
        sh.remaining = want - above;
        sh.equal_total = count[b];
        break;
      }
      above += count[b];
    }
  }
}

__global__ void __cluster_dims__(kCluster, 1, 1) __launch_bounds__(kThreads)
    global_threshold_kernel(const float* scores, int64_t head_stride, int S, int64_t keep, uint32_t* row_key,
                            int32_t* row_ties) {
  __shared__ Shared sh;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int64_t head = blockIdx.y;
  const float* head_scores = scores + head * head_stride;
  row_key += head * S;
  row_ties += head * S;
  const int64_t entries = int64_t(S) * S;

  if (keep == 0) {  // sparsity 1: no entry passes; the emit step still adds diagonal and text
    for (int i = rank * kThreads + threadIdx.x; i < S; i += kCluster * kThreads) {
      row_key[i] = 0xffffffffu;
      row_ties[i] = 0;
    }
    return;
  }

  const int64_t quads = entries / 4;
  const int64_t per_cta = (quads + kCluster - 1) / kCluster;
  const int64_t begin4 = min(quads, rank * per_cta), end4 = min(quads, begin4 + per_cta);
  const int64_t tail_begin = rank == 0 ? quads * 4 : entries;

  if (threadIdx.x == 0) {
    sh.prefix = 0;
    sh.remaining = int(keep);
  }
  uint32_t prefix_mask = 0;
  for (int p = 0; p < kNumPasses; ++p) {
    const Pass pass = pass_of(p);
    for (int b = threadIdx.x; b < kBins; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    histogram_slice(sh.hist, head_scores, begin4, end4, tail_begin, entries, sh.prefix, prefix_mask, pass);
    cluster.sync();  // all eight histograms complete
    pick_digit(sh, cluster, pass);
    prefix_mask |= pass.digit_mask << pass.shift;
    cluster.sync();  // nobody reads a histogram any more: the next pass may clear it
  }
  const uint32_t t = sh.prefix;
  const int m = sh.remaining;

  // Rows of this CTA: a contiguous range, so flat order is row order across the cluster.
  const int rows_per_cta = (S + kCluster - 1) / kCluster;
  const int row_begin = min(S, rank * rows_per_cta), row_end = min(S, row_begin + rows_per_cta);
  if (m == sh.equal_total) {  // every entry equal to t is kept: no tie is split
    for (int i = row_begin + threadIdx.x; i < row_end; i += kThreads) {
      row_key[i] = t;
      row_ties[i] = S;
    }
    return;
  }

  // Split tie: count entries == t per row (one warp per row), then prefix them over rows.
  if (threadIdx.x == 0) sh.cta_equal = 0;
  __syncthreads();
  const int lane = threadIdx.x % 32;
  for (int i = row_begin + threadIdx.x / 32; i < row_end; i += kThreads / 32) {
    int equal = 0;
    for (int j0 = 0; j0 < S; j0 += 32) {
      const int j = j0 + lane;
      equal += __popc(__ballot_sync(0xffffffffu, j < S && order_key(head_scores[int64_t(i) * S + j]) == t));
    }
    if (lane == 0) {
      row_ties[i] = equal;
      atomicAdd(&sh.cta_equal, equal);
    }
  }
  __syncthreads();
  cluster.sync();  // every CTA's cta_equal is final
  int before = 0;
  for (int r = 0; r < rank; ++r) before += *cluster.map_shared_rank(&sh.cta_equal, r);
  for (int i0 = row_begin; i0 < row_end; i0 += kThreads) {
    const int i = i0 + threadIdx.x;
    const int equal = i < row_end ? row_ties[i] : 0;
    int in_chunk, chunk_total;
    Scan(sh.scan).ExclusiveSum(equal, in_chunk, chunk_total);
    if (i < row_end) {
      row_key[i] = t;
      row_ties[i] = max(0, min(equal, m - (before + in_chunk)));
    }
    before += chunk_total;
    __syncthreads();  // scan storage is reused by the next chunk
  }
  cluster.sync();  // keep this CTA's shared memory alive until every remote read is done
}

}  // namespace

cudaError_t launch_global_threshold(const DraftSelectArgs& a, int64_t head_stride, int64_t keep,
                                    cudaStream_t stream) {
  global_threshold_kernel<<<dim3(kCluster, a.batch_heads), kThreads, 0, stream>>>(
      a.scores, head_stride, a.num_regions, keep, a.row_key, a.row_ties);
  return cudaGetLastError();
}

}  // namespace draftattn
