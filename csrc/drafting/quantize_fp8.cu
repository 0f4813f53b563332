// q, k, v -> e4m3 for the fp8 attention kernel, bit-identical to reference::quantize_fp8.
// Launch 1, one CTA per (head, block, batch x tensor) 128-token tile: q and k tiles find
// their |x| max, write the descale and the e4m3 rows; v tiles only fold their |x| max into
// the (batch, head) maximum. Launch 2, one CTA per v tile: scale by the head's descale,
// round, and stage the bytes in shared memory as V^T rows in the fp8 key order, so both the
// reads of v and the 128-byte V^T rows written out are whole contiguous segments.
// The tile machinery and the exactness argument are in fp8_tiles.cuh.
#include "draftattn/drafting.h"
#include "fp8_tiles.cuh"

namespace draftattn {
namespace {

using namespace fp8_tiles;

// Rows of block `block` of one (batch, head) of a region-major x; rows past `tokens` read as
// zeros, which is the reference's padding.
template <typename Elem>
struct BlockRows {
  const Elem* block_base;  // row 0 of the block
  int64_t token_stride;
  int valid_rows;

  __device__ BlockRows(const TokenTensor& x, int batch, int head, int block, int tokens)
      : block_base(static_cast<const Elem*>(x.data) + batch * x.batch_stride + head * x.head_stride +
                   int64_t(block) * kBlockSize * x.token_stride),
        token_stride(x.token_stride),
        valid_rows(tokens - block * kBlockSize) {}

  __device__ const Elem* row(int r) const { return r < valid_rows ? block_base + r * token_stride : nullptr; }
};

template <typename Elem, int kVec, int kHeadDim>
__global__ void __launch_bounds__(kThreads) quantize_tiles_kernel(QuantizeFp8Args a) {
  const int head = blockIdx.x, block = blockIdx.y, tensor = blockIdx.z % 3, batch = blockIdx.z / 3;
  const TokenTensor& x = tensor == 0 ? a.q : tensor == 1 ? a.k : a.v;
  Tile<Elem, kVec, kHeadDim, TransposeMap<kVec, kHeadDim>> tile;
  tile.load(BlockRows<Elem>(x, batch, head, block, a.tokens));
  const uint32_t amax = cta_max(tile.abs_max_bits());
  if (tensor == 2) {
    if (threadIdx.x == 0) atomicMax(a.v_amax + int64_t(batch) * a.heads + head, amax);
    return;
  }

  const Scale scale(amax);
  const int num_blocks = gridDim.y;
  if (threadIdx.x == 0)
    (tensor == 0 ? a.q_descale : a.k_descale)[(int64_t(batch) * a.heads + head) * num_blocks + block] = scale.descale;
  const int64_t row_stride = int64_t(a.heads) * kHeadDim;
  uint8_t* dst = (tensor == 0 ? a.q_fp8 : a.k_fp8) + (int64_t(batch) * a.tokens * a.heads + head) * kHeadDim +
                 int64_t(block) * kBlockSize * row_stride;
  store_e4m3_rows(tile, scale, dst, row_stride, a.tokens - block * kBlockSize);
}

// The minimum of one CTA per SM keeps ptxas from spilling in the scalar (kVec = 1) variant to
// reach a higher occupancy target.
template <typename Elem, int kVec, int kHeadDim>
__global__ void __launch_bounds__(kThreads, 1) transpose_v_kernel(QuantizeFp8Args a) {
  const int head = blockIdx.x, block = blockIdx.y, batch = blockIdx.z;
  const int64_t batch_head = int64_t(batch) * a.heads + head;
  const Scale scale(a.v_amax[batch_head]);
  if (block == 0 && threadIdx.x == 0) a.v_descale[batch_head] = scale.descale;

  Tile<Elem, kVec, kHeadDim, TransposeMap<kVec, kHeadDim>> tile;
  tile.load(BlockRows<Elem>(a.v, batch, head, block, a.tokens));
  const int64_t padded = int64_t(gridDim.y) * kBlockSize;
  store_e4m3_transposed(tile, scale, a.v_t_fp8 + batch_head * kHeadDim * padded + int64_t(block) * kBlockSize,
                        padded);
}

template <typename Elem, int kVec, int kHeadDim>
cudaError_t launch(const QuantizeFp8Args& a, cudaStream_t stream) {
  const int num_blocks = (a.tokens + kBlockSize - 1) / kBlockSize;
  cudaError_t err = cudaMemsetAsync(a.v_amax, 0, sizeof(uint32_t) * a.batch * a.heads, stream);
  if (err != cudaSuccess) return err;
  quantize_tiles_kernel<Elem, kVec, kHeadDim><<<dim3(a.heads, num_blocks, a.batch * 3), kThreads, 0, stream>>>(a);
  transpose_v_kernel<Elem, kVec, kHeadDim><<<dim3(a.heads, num_blocks, a.batch), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

bool all_aligned(const QuantizeFp8Args& a) {
  for (const TokenTensor* x : {&a.q, &a.k, &a.v})
    if (!aligned16(x->data, 2, {x->batch_stride, x->token_stride, x->head_stride})) return false;
  return true;
}

template <typename Elem, int kHeadDim>
cudaError_t dispatch_width(const QuantizeFp8Args& a, cudaStream_t stream) {
  if (all_aligned(a)) return launch<Elem, 8, kHeadDim>(a, stream);
  return launch<Elem, 1, kHeadDim>(a, stream);
}

template <typename Elem>
cudaError_t dispatch_head_dim(const QuantizeFp8Args& a, cudaStream_t stream) {
  if (a.head_dim == 64) return dispatch_width<Elem, 64>(a, stream);
  return dispatch_width<Elem, 128>(a, stream);
}

}  // namespace

cudaError_t quantize_fp8(const QuantizeFp8Args& args, cudaStream_t stream) {
  if (!quantize_fp8_kernel_fits(args.batch, args.tokens, args.heads, args.head_dim) ||
      args.dtype == DType::kFloat8E4M3)
    return cudaErrorInvalidValue;
  if (args.dtype == DType::kBFloat16) return dispatch_head_dim<__nv_bfloat16>(args, stream);
  return dispatch_head_dim<__half>(args, stream);
}

}  // namespace draftattn
