// Model order -> padded region-major copies and fp32 region means, one read of each input.
// One CTA per (head, block, batch x tensor): 128 rows x head_dim. Heads vary fastest in the
// grid, so CTAs running together read whole (token, all heads) rows of the input. Each thread owns one
// 16-byte column pack and every row_groups-th row, so a warp touches whole contiguous
// (token, head) rows; loads of several rows are issued before any store to keep enough
// bytes in flight for a memory-bound copy.
#include "draftattn/drafting.h"
#include "region_geometry.cuh"
#include "vec_io.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsInFlight = 8;

template <typename Elem, int kVec>
__global__ void __launch_bounds__(kThreads) gather_regions_kernel(GatherRegionsArgs args, RegionMap map,
                                                                  int first_block) {
  using P = Pack<Elem, kVec>;
  __shared__ float partial[kThreads * 8];  // (row group, channel) sums for the pooled mean

  const int packs_per_row = args.head_dim / kVec;
  const int row_groups = kThreads / packs_per_row;
  const int col = threadIdx.x % packs_per_row;
  const int group = threadIdx.x / packs_per_row;
  const bool active = group < row_groups;

  const int head = blockIdx.x;
  const int block = first_block + blockIdx.y;
  const int tensor = blockIdx.z % args.num_tensors;
  const int batch = blockIdx.z / args.num_tensors;
  const RegionMap::Block blk = map.block(block);

  const TokenTensor& s = args.src[tensor];
  const Elem* src = static_cast<const Elem*>(s.data) + batch * s.batch_stride + head * s.head_stride + col * kVec;
  Elem* dst = nullptr;
  if (args.dst[tensor] != nullptr) {
    const TokenTensor& d = args.dst_strides[tensor];
    dst = static_cast<Elem*>(args.dst[tensor]) + batch * d.batch_stride + head * d.head_stride +
          int64_t(block) * kBlockSize * d.token_stride + col * kVec;
  }
  const bool pool = args.pooled[tensor] != nullptr;

  float sum[kVec];
  for (int i = 0; i < kVec; ++i) sum[i] = 0.f;

  if (active) {
    for (int r0 = group; r0 < kBlockSize; r0 += row_groups * kRowsInFlight) {
      P pack[kRowsInFlight];
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) {
        const int64_t token = map.token(blk, r0 + u * row_groups);
        pack[u] = token >= 0 ? P::load(src + token * s.token_stride) : P::zero();
      }
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) {
        const int row = r0 + u * row_groups;
        if (row >= kBlockSize) break;
        if (dst != nullptr) pack[u].store(dst + row * args.dst_strides[tensor].token_stride);
        if (pool) {
#pragma unroll
          for (int i = 0; i < kVec; ++i) sum[i] += to_float(pack[u].elem[i]);
        }
      }
    }
  }

  // Text blocks are never pooled; the grid only covers regions when nothing is copied.
  if (!pool || !blk.is_video()) return;
  if (active)
    for (int i = 0; i < kVec; ++i) partial[group * args.head_dim + col * kVec + i] = sum[i];
  __syncthreads();
  const int region = map.text_first ? block - map.text_blocks : block;
  float* out = args.pooled[tensor] + ((int64_t(batch) * args.heads + head) * map.num_regions + region) * args.head_dim;
  for (int c = threadIdx.x; c < args.head_dim; c += kThreads) {
    float total = 0.f;
    for (int g = 0; g < row_groups; ++g) total += partial[g * args.head_dim + c];
    out[c] = total / float(blk.valid);
  }
}

template <typename Elem, int kVec>
cudaError_t launch(const GatherRegionsArgs& args, const RegionMap& map, cudaStream_t stream) {
  // Pooling alone needs the region blocks only.
  bool copies = false;
  for (int t = 0; t < args.num_tensors; ++t) copies |= args.dst[t] != nullptr;
  const int first_block = copies || !map.text_first ? 0 : map.text_blocks;
  const int blocks = copies ? map.num_regions + map.text_blocks : map.num_regions;
  if (blocks == 0 || args.batch == 0 || args.heads == 0) return cudaSuccess;
  const dim3 grid(args.heads, blocks, args.batch * args.num_tensors);
  gather_regions_kernel<Elem, kVec><<<grid, kThreads, 0, stream>>>(args, map, first_block);
  return cudaGetLastError();
}

bool all_aligned(const GatherRegionsArgs& a) {
  for (int t = 0; t < a.num_tensors; ++t) {
    const TokenTensor& s = a.src[t];
    if (!aligned16(s.data, 2, {s.batch_stride, s.token_stride, s.head_stride, a.head_dim})) return false;
    const TokenTensor& d = a.dst_strides[t];
    if (a.dst[t] != nullptr &&
        !aligned16(a.dst[t], 2, {d.batch_stride, d.token_stride, d.head_stride, a.head_dim}))
      return false;
  }
  return true;
}

template <typename Elem>
cudaError_t dispatch_width(const GatherRegionsArgs& args, const RegionMap& map, cudaStream_t stream) {
  if (all_aligned(args)) return launch<Elem, 8>(args, map, stream);
  return launch<Elem, 1>(args, map, stream);
}

}  // namespace

bool regions_kernel_supports(int head_dim) { return head_dim > 0 && head_dim <= kThreads; }

cudaError_t gather_regions(const GatherRegionsArgs& args, cudaStream_t stream) {
  if (!regions_kernel_supports(args.head_dim) || args.num_tensors < 1 || args.num_tensors > kMaxGatherTensors)
    return cudaErrorInvalidValue;
  const RegionMap map = RegionMap::from(args.layout);
  if (args.dtype == DType::kBFloat16) return dispatch_width<__nv_bfloat16>(args, map, stream);
  return dispatch_width<__half>(args, map, stream);
}

}  // namespace draftattn
