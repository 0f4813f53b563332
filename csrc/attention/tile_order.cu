// Longest rows first. The persistent CTAs take tiles from one counter, so the run ends
// when the last-taken tiles finish; taking each head's longest lists first leaves the
// shortest ones for the end, where they fill the gaps. Heads keep their order, so the
// CTAs running at one time still share one head's K, V in L2.
//
// A counting sort per (batch, head) on list length (lengths above kBuckets share buckets).
// The order inside a bucket depends on atomics: it changes only the schedule, never a result.
#include <cub/block/block_scan.cuh>

#include "tile_order.cuh"

namespace draftattn::sm90 {
namespace {

constexpr int kThreads = 256;
constexpr int kBucketsPerThread = 4;
constexpr int kBuckets = kThreads * kBucketsPerThread;

__global__ void __launch_bounds__(kThreads) order_tiles_kernel(SparseAttnParams a, int length_shift) {
  __shared__ int bucket_next[kBuckets];
  __shared__ typename cub::BlockScan<int, kThreads>::TempStorage scan_storage;
  const int batch = blockIdx.x / a.heads, head = blockIdx.x % a.heads;
  const int32_t* counts = a.kv_counts + batch * a.cnt_batch_stride + head * a.cnt_head_stride;
  int32_t* order = a.workspace + 1 + int64_t(blockIdx.x) * a.num_blocks;
  if (blockIdx.x == 0 && threadIdx.x == 0) a.workspace[0] = 0;

  // Bucket 0 holds the longest lists.
  auto bucket_of = [&](int q_block) {
    const int count = min(max(counts[q_block], 0), a.max_blocks);
    return kBuckets - 1 - (count >> length_shift);
  };
  for (int i = threadIdx.x; i < kBuckets; i += kThreads) bucket_next[i] = 0;
  __syncthreads();
  for (int q = threadIdx.x; q < a.num_blocks; q += kThreads) atomicAdd(&bucket_next[bucket_of(q)], 1);
  __syncthreads();

  int sizes[kBucketsPerThread];
  for (int i = 0; i < kBucketsPerThread; ++i) sizes[i] = bucket_next[threadIdx.x * kBucketsPerThread + i];
  cub::BlockScan<int, kThreads>(scan_storage).ExclusiveSum(sizes, sizes);
  for (int i = 0; i < kBucketsPerThread; ++i) bucket_next[threadIdx.x * kBucketsPerThread + i] = sizes[i];
  __syncthreads();
  for (int q = threadIdx.x; q < a.num_blocks; q += kThreads) order[atomicAdd(&bucket_next[bucket_of(q)], 1)] = q;
}

}  // namespace

cudaError_t order_tiles_longest_first(const SparseAttnParams& args, cudaStream_t stream) {
  int length_shift = 0;
  while ((args.max_blocks >> length_shift) >= kBuckets) ++length_shift;
  order_tiles_kernel<<<args.batch * args.heads, kThreads, 0, stream>>>(args, length_shift);
  return cudaGetLastError();
}

}  // namespace draftattn::sm90
