// Model order -> e4m3 region-major q, k, V^T and fp32 region means of q, k, in two launches
// that read q and k once and v twice (its per-(batch, head) descale needs every v tile first).
// Launch 1, one CTA per (head, block, batch x tensor) tile gathered through the region
// geometry (padding rows of the last edge block are zeros, as to_regions writes them): q and k
// tiles write their descale, e4m3 rows and, for a video block, its mean from the
// same registers; v tiles fold their |x| max into the (batch, head) maximum. Launch 2, one
// CTA per v tile: V^T in the fp8 key order as quantize_fp8.cu writes it.
// Bit-identical to quantize_fp8(to_regions_and_pool(...)[:3]) plus to_regions_and_pool's
// means: the e4m3 tiles see the very rows to_regions writes, and the means are summed in
// gather_regions.cu's order (fp8_tiles::RowMap) with the same vector width.
#include "draftattn/drafting.h"
#include "fp8_tiles.cuh"
#include "region_geometry.cuh"

namespace draftattn {
namespace {

using namespace fp8_tiles;

// Rows of one block of one (batch, head) of a model-order x: row r is the block's r-th
// token (RegionMap), nullptr for a padding row.
template <typename Elem>
struct RegionRows {
  const Elem* head_base;
  int64_t token_stride;
  RegionMap::Block blk;
  RegionMap map;

  __device__ RegionRows(const TokenTensor& x, int batch, int head, const RegionMap::Block& blk, const RegionMap& map)
      : head_base(static_cast<const Elem*>(x.data) + batch * x.batch_stride + head * x.head_stride),
        token_stride(x.token_stride),
        blk(blk),
        map(map) {}

  __device__ const Elem* row(int r) const {
    const int64_t token = map.token(blk, r);
    return token < 0 ? nullptr : head_base + token * token_stride;
  }
};

// The mean of the tile's `valid` rows (padding rows are zero) into out[0, kHeadDim): each
// thread sums its rows in step order, then thread c adds the row groups' sums of column c in
// group order, which is gather_regions.cu's summation order for the same vector width.
template <typename Elem, int kVec, int kHeadDim>
__device__ void store_region_mean(const Tile<Elem, kVec, kHeadDim, RowMap<kVec, kHeadDim>>& tile, int valid,
                                  float* out) {
  using Map = RowMap<kVec, kHeadDim>;
  __shared__ float partial[Map::kRowGroups * kHeadDim];
  float sum[kVec];
#pragma unroll
  for (int e = 0; e < kVec; ++e) sum[e] = 0.f;
#pragma unroll
  for (int i = 0; i < Map::kSteps; ++i)
#pragma unroll
    for (int e = 0; e < kVec; ++e) sum[e] += to_float(tile.packs[i].elem[e]);
  const int group = threadIdx.x / Map::kPacksPerRow;
#pragma unroll
  for (int e = 0; e < kVec; ++e) partial[group * kHeadDim + Map::pack(0) * kVec + e] = sum[e];
  __syncthreads();
  for (int c = threadIdx.x; c < kHeadDim; c += kThreads) {
    float total = 0.f;
    for (int g = 0; g < Map::kRowGroups; ++g) total += partial[g * kHeadDim + c];
    out[c] = total / float(valid);
  }
}

template <typename Elem, int kVec, int kHeadDim>
__global__ void __launch_bounds__(kThreads) region_tiles_kernel(RegionsFp8Args a, RegionMap map) {
  const int head = blockIdx.x, block = blockIdx.y, tensor = blockIdx.z % 3, batch = blockIdx.z / 3;
  const TokenTensor& x = tensor == 0 ? a.q : tensor == 1 ? a.k : a.v;
  const RegionMap::Block blk = map.block(block);
  Tile<Elem, kVec, kHeadDim, RowMap<kVec, kHeadDim>> tile;
  tile.load(RegionRows<Elem>(x, batch, head, blk, map));
  const uint32_t amax = cta_max(tile.abs_max_bits());
  const int64_t batch_head = int64_t(batch) * a.heads + head;
  if (tensor == 2) {
    if (threadIdx.x == 0) atomicMax(a.v_amax + batch_head, amax);
    return;
  }

  const Scale scale(amax);
  const int num_blocks = gridDim.y;
  if (threadIdx.x == 0) (tensor == 0 ? a.q_descale : a.k_descale)[batch_head * num_blocks + block] = scale.descale;
  const int64_t row_stride = int64_t(a.heads) * kHeadDim;
  const int64_t padded = int64_t(num_blocks) * kBlockSize;
  uint8_t* dst = (tensor == 0 ? a.q_fp8 : a.k_fp8) + (int64_t(batch) * padded * a.heads + head) * kHeadDim +
                 int64_t(block) * kBlockSize * row_stride;
  store_e4m3_rows(tile, scale, dst, row_stride, kBlockSize);

  if (!blk.is_video()) return;  // text blocks are not pooled
  const int region = map.text_first ? block - map.text_blocks : block;
  float* pooled = tensor == 0 ? a.q_pooled : a.k_pooled;
  store_region_mean(tile, blk.valid, pooled + (batch_head * map.num_regions + region) * kHeadDim);
}

// A minimum of one CTA per SM, as in quantize_fp8.cu's transpose_v_kernel: with none, ptxas
// aims at 64 registers for the fp16 variant and spills.
template <typename Elem, int kVec, int kHeadDim>
__global__ void __launch_bounds__(kThreads, 1) region_v_kernel(RegionsFp8Args a, RegionMap map) {
  const int head = blockIdx.x, block = blockIdx.y, batch = blockIdx.z;
  const int64_t batch_head = int64_t(batch) * a.heads + head;
  const Scale scale(a.v_amax[batch_head]);
  if (block == 0 && threadIdx.x == 0) a.v_descale[batch_head] = scale.descale;

  Tile<Elem, kVec, kHeadDim, TransposeMap<kVec, kHeadDim>> tile;
  tile.load(RegionRows<Elem>(a.v, batch, head, map.block(block), map));
  const int64_t padded = int64_t(gridDim.y) * kBlockSize;
  store_e4m3_transposed(tile, scale, a.v_t_fp8 + batch_head * kHeadDim * padded + int64_t(block) * kBlockSize,
                        padded);
}

template <typename Elem, int kVec, int kHeadDim>
cudaError_t launch(const RegionsFp8Args& a, const RegionMap& map, cudaStream_t stream) {
  const int num_blocks = map.num_regions + map.text_blocks;
  cudaError_t err = cudaMemsetAsync(a.v_amax, 0, sizeof(uint32_t) * a.batch * a.heads, stream);
  if (err != cudaSuccess) return err;
  region_tiles_kernel<Elem, kVec, kHeadDim>
      <<<dim3(a.heads, num_blocks, a.batch * 3), kThreads, 0, stream>>>(a, map);
  region_v_kernel<Elem, kVec, kHeadDim><<<dim3(a.heads, num_blocks, a.batch), kThreads, 0, stream>>>(a, map);
  return cudaGetLastError();
}

// The width rule of gather_regions.cu (its sources; its outputs are always aligned), so the
// region means are summed in the same order as to_regions_and_pool's.
bool all_aligned(const RegionsFp8Args& a) {
  for (const TokenTensor* x : {&a.q, &a.k, &a.v})
    if (!aligned16(x->data, 2, {x->batch_stride, x->token_stride, x->head_stride, a.head_dim})) return false;
  return true;
}

template <typename Elem, int kHeadDim>
cudaError_t dispatch_width(const RegionsFp8Args& a, const RegionMap& map, cudaStream_t stream) {
  if (all_aligned(a)) return launch<Elem, 8, kHeadDim>(a, map, stream);
  return launch<Elem, 1, kHeadDim>(a, map, stream);
}

template <typename Elem>
cudaError_t dispatch_head_dim(const RegionsFp8Args& a, const RegionMap& map, cudaStream_t stream) {
  if (a.head_dim == 64) return dispatch_width<Elem, 64>(a, map, stream);
  return dispatch_width<Elem, 128>(a, map, stream);
}

}  // namespace

cudaError_t to_regions_quantize_fp8(const RegionsFp8Args& args, cudaStream_t stream) {
  const RegionLayout& l = args.layout;
  if (!regions_fp8_kernel_fits(args.batch, args.heads, args.head_dim, l.model_tokens(), l.num_blocks()) ||
      args.dtype == DType::kFloat8E4M3)
    return cudaErrorInvalidValue;
  const RegionMap map = RegionMap::from(l);
  if (args.dtype == DType::kBFloat16) return dispatch_head_dim<__nv_bfloat16>(args, map, stream);
  return dispatch_head_dim<__half>(args, map, stream);
}

}  // namespace draftattn
