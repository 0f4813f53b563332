// Per-row rules ("topk", "topp"): each row keeps its n best entries in the order value
// descending, lower column first. One CTA per row sorts the row's order keys in shared
// memory (bitonic, descending) and reports the key t of the n-th entry and how many entries
// equal to t fit (they are the lowest columns among those equal to t).
// topk: n is given. topp: n = entries whose preceding mass (sorted order, summed in double
// like the reference) is below top_p; the first entry always counts.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "draft_steps.h"
#include "float_key.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = 256;

__device__ void sort_descending(uint32_t* keys, int size) {
  for (int k = 2; k <= size; k *= 2) {
    for (int j = k / 2; j > 0; j /= 2) {
      for (int i = threadIdx.x; i < size; i += kThreads) {
        const int other = i ^ j;
        if (other > i) {
          const uint32_t a = keys[i], b = keys[other];
          const bool descending = (i & k) == 0;
          if (descending ? a < b : a > b) {
            keys[i] = b;
            keys[other] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// Entries of the sorted row whose preceding mass is below top_p.
__device__ int top_p_count(const uint32_t* keys, int S, double top_p) {
  using Scan = cub::BlockScan<double, kThreads>;
  using Reduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ typename Reduce::TempStorage reduce;
  const int per = (S + kThreads - 1) / kThreads;
  const int begin = min(S, int(threadIdx.x) * per), end = min(S, begin + per);
  double mass = 0.0;
  for (int i = begin; i < end; ++i) mass += double(key_value(keys[i]));
  double before;
  Scan(scan).ExclusiveSum(mass, before);
  int count = 0;
  for (int i = begin; i < end; ++i) {
    count += before < top_p;
    before += double(key_value(keys[i]));
  }
  return Reduce(reduce).Sum(count);  // valid in thread 0
}

__global__ void __launch_bounds__(kThreads) row_threshold_kernel(const float* scores, int64_t head_stride, int S,
                                                                 int sort_size, bool top_p_rule, int row_keep,
                                                                 double top_p, uint32_t* row_key, int32_t* row_ties) {
  extern __shared__ uint32_t keys[];
  __shared__ int keep, first_equal;
  const int64_t row = blockIdx.x;
  const float* x = scores + (row / S) * head_stride + (row % S) * S;
  for (int i = threadIdx.x; i < sort_size; i += kThreads) keys[i] = i < S ? order_key(x[i]) : 0u;
  __syncthreads();
  sort_descending(keys, sort_size);

  if (top_p_rule) {
    const int count = top_p_count(keys, S, top_p);
    if (threadIdx.x == 0) keep = count;
  } else if (threadIdx.x == 0) {
    keep = row_keep;
  }
  __syncthreads();
  const uint32_t t = keys[keep - 1];
  for (int i = threadIdx.x; i < keep; i += kThreads)
    if (keys[i] == t && (i == 0 || keys[i - 1] != t)) first_equal = i;
  __syncthreads();
  if (threadIdx.x == 0) {
    row_key[row] = t;
    row_ties[row] = keep - first_equal;
  }
}

}  // namespace

cudaError_t launch_row_threshold(const DraftSelectArgs& a, int64_t head_stride, int row_keep, cudaStream_t stream) {
  int sort_size = 1;
  while (sort_size < a.num_regions) sort_size *= 2;
  const size_t smem = sizeof(uint32_t) * sort_size;
  if (smem > 48 * 1024) {  // beyond the default limit (S > 8192): opt in once per call
    const cudaError_t err =
        cudaFuncSetAttribute(row_threshold_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (err != cudaSuccess) return err;
  }
  const int64_t rows = int64_t(a.batch_heads) * a.num_regions;
  row_threshold_kernel<<<unsigned(rows), kThreads, smem, stream>>>(a.scores, head_stride, a.num_regions, sort_size,
                                                                    a.rule == SelectRule::kTopP, row_keep, a.top_p,
                                                                    a.row_key, a.row_ties);
  return cudaGetLastError();
}

}  // namespace draftattn
