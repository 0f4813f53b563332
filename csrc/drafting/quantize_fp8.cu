// q, k, v -> e4m3 for the fp8 attention kernel, bit-identical to reference::quantize_fp8.
// Launch 1, one CTA per (head, block, batch x tensor) 128-token tile: q and k tiles find
// their |x| max, write the descale and the e4m3 rows; v tiles only fold their |x| max into
// the (batch, head) maximum. Launch 2, one CTA per v tile: scale by the head's descale,
// round, and stage the bytes in shared memory as V^T rows in the fp8 key order, so both the
// reads of v and the 128-byte V^T rows written out are whole contiguous segments.
//
// Exactness: descales are amax / 448 and values x / descale, both correctly rounded fp32
// divisions as ATen's CPU kernels do them (the build uses --use_fast_math, so they are
// written as PTX div.rn.f32, which also keeps subnormals), and the e4m3 rounding is ATen's
// own (e4m3_bits below).
#include "draftattn/drafting.h"
#include "vec_io.cuh"

namespace draftattn {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr float kE4M3Max = 448.f;
constexpr uint32_t kFloatInfBits = 0x7f800000u;

// Which (row, pack) of the 128 x head_dim tile a thread loads in step i. A warp takes 8
// consecutive rows x 4 consecutive packs: with 16-byte packs, whole 64-byte segments of the
// input; in the V^T staging, the lanes' bytes land in 16 words of 16 different banks.
template <int kVec, int kHeadDim>
struct TileMap {
  static constexpr int kPacksPerRow = kHeadDim / kVec;
  static constexpr int kPackGroups = kPacksPerRow / 4;
  static constexpr int kSteps = kBlockSize * kPacksPerRow / kThreads;
  static_assert(kPacksPerRow % 4 == 0 && kSteps * kThreads == kBlockSize * kPacksPerRow, "tile split");

  __device__ static int row(int step) {
    const int unit = step * kWarps + threadIdx.x / 32;
    return unit / kPackGroups * 8 + threadIdx.x % 32 / 4;
  }
  __device__ static int pack(int step) {
    const int unit = step * kWarps + threadIdx.x / 32;
    return unit % kPackGroups * 4 + threadIdx.x % 4;
  }
};

// The tile of block `block` of one (batch, head) of x; rows past `tokens` read as zeros,
// which is the reference's padding.
template <typename Elem, int kVec, int kHeadDim>
struct Tile {
  using Map = TileMap<kVec, kHeadDim>;
  Pack<Elem, kVec> packs[Map::kSteps];

  __device__ void load(const TokenTensor& x, int batch, int head, int block, int tokens) {
    const Elem* src = static_cast<const Elem*>(x.data) + batch * x.batch_stride + head * x.head_stride;
#pragma unroll
    for (int i = 0; i < Map::kSteps; ++i) {
      const int64_t token = int64_t(block) * kBlockSize + Map::row(i);
      packs[i] = token < tokens ? Pack<Elem, kVec>::load(src + token * x.token_stride + Map::pack(i) * kVec)
                                : Pack<Elem, kVec>::zero();
    }
  }

  // max |x| as float bits: non-negative floats order as their bits, and a NaN (bits above
  // inf's) wins, as it does in ATen's amax.
  __device__ uint32_t abs_max_bits() const {
    uint32_t m = 0;
#pragma unroll
    for (int i = 0; i < Map::kSteps; ++i)
#pragma unroll
      for (int e = 0; e < kVec; ++e) m = max(m, __float_as_uint(to_float(packs[i].elem[e])) & 0x7fffffffu);
    return m;
  }
};

__device__ inline float div_rn(float a, float b) {
  float q;
  asm("div.rn.f32 %0, %1, %2;" : "=f"(q) : "f"(a), "f"(b));
  return q;
}

// where(amax > 0, amax / 448, 1) in fp32; amax arrives as float bits (NaN gives 1, too).
__device__ inline float descale_of(uint32_t amax_bits) {
  const bool positive = amax_bits != 0 && amax_bits <= kFloatInfBits;
  return positive ? div_rn(__uint_as_float(amax_bits), kE4M3Max) : 1.f;
}

// float -> e4m3fn bits exactly as ATen's CPU conversion: round to nearest even, magnitudes
// past 448 (inf too) saturate to 448, NaN -> 0x7f with the sign kept. This is
// c10::detail::fp8e4m3fn_from_fp32_value with the saturation applied first.
__device__ inline uint8_t e4m3_bits(float f) {
  uint32_t bits = __float_as_uint(f);
  const uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  uint32_t result;
  if (bits > kFloatInfBits) {
    result = 0x7f;
  } else {
    bits = min(bits, __float_as_uint(kE4M3Max));
    if (bits < (121u << 23)) {
      // Below e4m3's smallest normal: adding 2^14 leaves the value in units of the
      // subnormal step 2^-9 in the low mantissa bits, rounded to nearest even.
      constexpr uint32_t kDenormMagic = 141u << 23;
      result = __float_as_uint(__fadd_rn(__uint_as_float(bits), __uint_as_float(kDenormMagic))) - kDenormMagic;
    } else {
      const uint32_t mantissa_odd = (bits >> 20) & 1;
      bits += (uint32_t(7 - 127) << 23) + 0x7ffff + mantissa_odd;
      result = bits >> 20;
    }
  }
  return uint8_t(result | (sign >> 24));
}

template <int kVec> struct Fp8Bits;
template <> struct Fp8Bits<8> { using type = uint2; };
template <> struct Fp8Bits<1> { using type = uint8_t; };

template <typename Elem, int kVec>
__device__ typename Fp8Bits<kVec>::type to_e4m3(const Pack<Elem, kVec>& p, float descale) {
  union {
    typename Fp8Bits<kVec>::type bits;
    uint8_t byte[kVec];
  } out;
#pragma unroll
  for (int e = 0; e < kVec; ++e) out.byte[e] = e4m3_bits(div_rn(to_float(p.elem[e]), descale));
  return out.bits;
}

// The CTA's maximum, returned to every thread.
__device__ uint32_t cta_max(uint32_t m) {
  __shared__ uint32_t warp_max[kWarps];
  m = __reduce_max_sync(0xffffffffu, m);
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  m = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m = max(m, warp_max[w]);
  return m;
}

template <typename Elem, int kVec, int kHeadDim>
__global__ void __launch_bounds__(kThreads) quantize_tiles_kernel(QuantizeFp8Args a) {
  using Map = TileMap<kVec, kHeadDim>;
  const int head = blockIdx.x, block = blockIdx.y, tensor = blockIdx.z % 3, batch = blockIdx.z / 3;
  const TokenTensor& x = tensor == 0 ? a.q : tensor == 1 ? a.k : a.v;
  Tile<Elem, kVec, kHeadDim> tile;
  tile.load(x, batch, head, block, a.tokens);
  const uint32_t amax = cta_max(tile.abs_max_bits());
  if (tensor == 2) {
    if (threadIdx.x == 0) atomicMax(a.v_amax + int64_t(batch) * a.heads + head, amax);
    return;
  }

  const float descale = descale_of(amax);
  const int num_blocks = gridDim.y;
  if (threadIdx.x == 0)
    (tensor == 0 ? a.q_descale : a.k_descale)[(int64_t(batch) * a.heads + head) * num_blocks + block] = descale;
  using Bits = typename Fp8Bits<kVec>::type;
  uint8_t* dst = (tensor == 0 ? a.q_fp8 : a.k_fp8) + (int64_t(batch) * a.tokens * a.heads + head) * kHeadDim;
#pragma unroll
  for (int i = 0; i < Map::kSteps; ++i) {
    const int64_t token = int64_t(block) * kBlockSize + Map::row(i);
    if (token < a.tokens)
      *reinterpret_cast<Bits*>(dst + token * a.heads * kHeadDim + Map::pack(i) * kVec) =
          to_e4m3(tile.packs[i], descale);
  }
}

// Position of block row `row` in the fp8 key order (the inverse of docs/CONTRACT.md's
// formula): inside each 16, token 2i + j + 8h sits at 4i + j + 2h.
__device__ inline int key_position(int row) {
  const int t = row % 16;
  return row - t + (t % 8 / 2) * 4 + t % 2 + t / 8 * 2;
}

// Bytes of one staged V^T row: 128 keys plus a 4-byte pad, which puts the staging writes of
// a warp in distinct banks and lets 8 lanes read a row's 16-byte chunks conflict-free.
constexpr int kStagedRowWords = kBlockSize / 4 + 1;

template <typename Elem, int kVec, int kHeadDim>
__global__ void __launch_bounds__(kThreads) transpose_v_kernel(QuantizeFp8Args a) {
  using Map = TileMap<kVec, kHeadDim>;
  __shared__ uint32_t staged[kHeadDim * kStagedRowWords];
  const int head = blockIdx.x, block = blockIdx.y, batch = blockIdx.z;
  const int64_t batch_head = int64_t(batch) * a.heads + head;
  const float descale = descale_of(a.v_amax[batch_head]);
  if (block == 0 && threadIdx.x == 0) a.v_descale[batch_head] = descale;

  Tile<Elem, kVec, kHeadDim> tile;
  tile.load(a.v, batch, head, block, a.tokens);
  uint8_t* staged_bytes = reinterpret_cast<uint8_t*>(staged);
#pragma unroll
  for (int i = 0; i < Map::kSteps; ++i) {
    union {
      typename Fp8Bits<kVec>::type bits;
      uint8_t byte[kVec];
    } e4m3;
    e4m3.bits = to_e4m3(tile.packs[i], descale);
    const int position = key_position(Map::row(i));
#pragma unroll
    for (int e = 0; e < kVec; ++e)
      staged_bytes[(Map::pack(i) * kVec + e) * kStagedRowWords * 4 + position] = e4m3.byte[e];
  }
  __syncthreads();

  const int64_t padded = int64_t(gridDim.y) * kBlockSize;
  uint8_t* dst = a.v_t_fp8 + batch_head * kHeadDim * padded + int64_t(block) * kBlockSize;
  constexpr int kLanesPerRow = kBlockSize / 16;
  const int chunk = threadIdx.x % kLanesPerRow;
  for (int d = threadIdx.x / kLanesPerRow; d < kHeadDim; d += kThreads / kLanesPerRow) {
    const uint32_t* w = staged + d * kStagedRowWords + chunk * 4;
    *reinterpret_cast<uint4*>(dst + d * padded + chunk * 16) = make_uint4(w[0], w[1], w[2], w[3]);
  }
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
