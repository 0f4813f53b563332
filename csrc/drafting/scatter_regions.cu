// Padded region-major -> model order: the inverse of gather_regions for one tensor (the
// attention output). Same CTA shape: one (head, block, batch), 16-byte packs per thread,
// several rows loaded before they are stored. Padding rows are skipped.
#include "draftattn/drafting.h"
#include "region_geometry.cuh"
#include "vec_io.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsInFlight = 8;

template <typename Elem, int kVec>
__global__ void __launch_bounds__(kThreads) scatter_regions_kernel(ScatterRegionsArgs args, RegionMap map) {
  using P = Pack<Elem, kVec>;
  const int packs_per_row = args.head_dim / kVec;
  const int row_groups = kThreads / packs_per_row;
  const int col = threadIdx.x % packs_per_row;
  const int group = threadIdx.x / packs_per_row;
  if (group >= row_groups) return;

  const int head = blockIdx.x, block = blockIdx.y, batch = blockIdx.z;
  const RegionMap::Block blk = map.block(block);
  const TokenTensor& s = args.src;
  const TokenTensor& d = args.dst_strides;
  const Elem* src = static_cast<const Elem*>(s.data) + batch * s.batch_stride + head * s.head_stride +
                    int64_t(block) * kBlockSize * s.token_stride + col * kVec;
  Elem* dst = static_cast<Elem*>(args.dst) + batch * d.batch_stride + head * d.head_stride + col * kVec;

  for (int r0 = group; r0 < blk.valid; r0 += row_groups * kRowsInFlight) {
    P pack[kRowsInFlight];
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      const int row = r0 + u * row_groups;
      if (row < blk.valid) pack[u] = P::load(src + row * s.token_stride);
    }
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      const int row = r0 + u * row_groups;
      if (row < blk.valid) pack[u].store(dst + map.token(blk, row) * d.token_stride);
    }
  }
}

template <typename Elem, int kVec>
cudaError_t launch(const ScatterRegionsArgs& args, const RegionMap& map, cudaStream_t stream) {
  const int blocks = map.num_regions + map.text_blocks;
  if (blocks == 0 || args.batch == 0 || args.heads == 0) return cudaSuccess;
  scatter_regions_kernel<Elem, kVec><<<dim3(args.heads, blocks, args.batch), kThreads, 0, stream>>>(args, map);
  return cudaGetLastError();
}

template <typename Elem>
cudaError_t dispatch_width(const ScatterRegionsArgs& a, const RegionMap& map, cudaStream_t stream) {
  const TokenTensor& s = a.src;
  const TokenTensor& d = a.dst_strides;
  if (aligned16(s.data, 2, {s.batch_stride, s.token_stride, s.head_stride, a.head_dim}) &&
      aligned16(a.dst, 2, {d.batch_stride, d.token_stride, d.head_stride, a.head_dim}))
    return launch<Elem, 8>(a, map, stream);
  return launch<Elem, 1>(a, map, stream);
}

}  // namespace

cudaError_t scatter_regions(const ScatterRegionsArgs& args, cudaStream_t stream) {
  if (!regions_kernel_supports(args.head_dim)) return cudaErrorInvalidValue;
  const RegionMap map = RegionMap::from(args.layout);
  if (args.dtype == DType::kBFloat16) return dispatch_width<__nv_bfloat16>(args, map, stream);
  return dispatch_width<__half>(args, map, stream);
}

}  // namespace draftattn
