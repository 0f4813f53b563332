// Tile machinery shared by the two e4m3 quantisation passes (quantize_fp8.cu on region-major
// inputs, to_regions_quantize_fp8.cu straight from model order): one CTA holds one 128-row x
// head_dim tile of one (batch, head) in registers, finds its |x| max, and writes e4m3 rows or
// a V^T tile in the fp8 key order. Where a tile's rows come from is the caller's RowSource:
// `const Elem* row(int r)` gives row r's head_dim elements, or nullptr for a zero padding row.
//
// Exactness: descales are amax / 448 and values x / descale, both correctly rounded fp32
// divisions as ATen's CPU kernels do them (the build uses --use_fast_math, so they are
// written as PTX div.rn.f32, which also keeps subnormals), and the e4m3 rounding is ATen's
// own (e4m3_bits below), so both passes are bit-identical to reference::quantize_fp8.
// Those divisions and e4m3_bits cost ~25 instructions an element, which made the passes
// issue-bound. A tile whose amax is finite and >= kFastMinAmax (every real activation) takes
// a fast path of the same results: the quotient from a per-tile reciprocal and two fmas, and
// the hardware's cvt.rn.satfinite.e4m3x2.f32. An exhaustive CPU check proves both: for every
// bf16 and fp16 amax >= kFastMinAmax and every |x| <= amax, e4m3 of the fast quotient equals
// e4m3 of the correctly rounded one, and for every finite |q| <= 896 cuda_fp8's conversion
// (the host model of that cvt) equals e4m3_bits. Other tiles (NaN, inf, tiny amax) keep the
// exact division and e4m3_bits.
#pragma once
#include <cstdint>

#include "draftattn/drafting.h"
#include "vec_io.cuh"

namespace draftattn {
namespace fp8_tiles {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

constexpr float kE4M3Max = 448.f;
constexpr uint32_t kFloatInfBits = 0x7f800000u;

// Which (row, pack) of the tile a thread holds in step i, for writing V^T: a warp takes 8
// consecutive rows x 4 consecutive packs, so with 16-byte packs it reads whole 64-byte
// segments, and in the V^T staging the lanes' bytes land in 16 words of 16 different banks.
template <int kVec, int kHeadDim>
struct TransposeMap {
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

// Row-wise split for tiles written row by row: a thread keeps one column pack and every
// kRowGroups-th row, so a warp reads and writes whole (token, head) rows. It is also the split
// of gather_regions.cu, whose per-thread row order fixes the fp32 summation order of the
// region means (RowMap::pooled_sums reproduces it bit for bit).
template <int kVec, int kHeadDim>
struct RowMap {
  static constexpr int kPacksPerRow = kHeadDim / kVec;
  static constexpr int kRowGroups = kThreads / kPacksPerRow;
  static constexpr int kSteps = kBlockSize / kRowGroups;
  static_assert(kThreads % kPacksPerRow == 0 && kSteps * kRowGroups == kBlockSize, "tile split");

  __device__ static int row(int step) { return threadIdx.x / kPacksPerRow + step * kRowGroups; }
  __device__ static int pack(int) { return threadIdx.x % kPacksPerRow; }
};

template <typename Elem, int kVec, int kHeadDim, typename Map>
struct Tile {
  Pack<Elem, kVec> packs[Map::kSteps];

  // Issues every load before using any, to keep a memory-bound pass's bytes in flight.
  template <typename RowSource>
  __device__ void load(const RowSource& rows) {
#pragma unroll
    for (int i = 0; i < Map::kSteps; ++i) {
      const Elem* src = rows.row(Map::row(i));
      packs[i] = src != nullptr ? Pack<Elem, kVec>::load(src + Map::pack(i) * kVec) : Pack<Elem, kVec>::zero();
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

// Below 2^-100 the fast quotient's fma residual can underflow (the CPU check finds mismatches
// up to amax ~ 2^-104.6).
constexpr uint32_t kFastMinAmaxBits = uint32_t(127 - 100) << 23;

// One tile's division: its descale, and for the fast path the descale's reciprocal.
struct Scale {
  float descale;
  float neg_descale;
  float reciprocal;
  bool fast;

  __device__ explicit Scale(uint32_t amax_bits)
      : descale(descale_of(amax_bits)),
        neg_descale(-descale),
        reciprocal(div_rn(1.f, descale)),
        fast(amax_bits >= kFastMinAmaxBits && amax_bits < kFloatInfBits) {}
};

// Round-to-nearest fp32 multiply and fma that keep subnormals whatever the build's fast-math.
__device__ inline float mul_rn(float a, float b) {
  float p;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(p) : "f"(a), "f"(b));
  return p;
}
__device__ inline float fma_rn(float a, float b, float c) {
  float d;
  asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(d) : "f"(a), "f"(b), "f"(c));
  return d;
}

// q with x's sign. Every quotient x / descale takes x's sign (descale > 0): the fmas below
// lose it for x = -0, and a NaN quotient (inf / inf in a tile whose max is inf, or a NaN x)
// has none of its own (CUDA's NaN is positive, x86's negative).
__device__ inline float with_sign_of(float q, float x) {
  return __uint_as_float((__float_as_uint(q) & 0x7fffffffu) | (__float_as_uint(x) & 0x80000000u));
}

// x / descale for a fast tile: the reciprocal's product corrected by its exact residual.
__device__ inline float fast_quotient(float x, const Scale& s) {
  const float q0 = mul_rn(x, s.reciprocal);
  return with_sign_of(fma_rn(fma_rn(q0, s.neg_descale, x), s.reciprocal, q0), x);
}

// Two finite floats -> e4m3 (lo in the low byte), round to nearest even, saturating at 448.
__device__ inline uint16_t e4m3x2_bits(float lo, float hi) {
  uint16_t out;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(out) : "f"(hi), "f"(lo));
  return out;
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
__device__ typename Fp8Bits<kVec>::type to_e4m3(const Pack<Elem, kVec>& p, const Scale& s) {
  union {
    typename Fp8Bits<kVec>::type bits;
    uint8_t byte[kVec];
    uint16_t pair[(kVec + 1) / 2];
  } out;
  if (s.fast) {
    if constexpr (kVec == 1) {
      out.byte[0] = uint8_t(e4m3x2_bits(fast_quotient(to_float(p.elem[0]), s), 0.f));
    } else {
#pragma unroll
      for (int e = 0; e < kVec; e += 2)
        out.pair[e / 2] = e4m3x2_bits(fast_quotient(to_float(p.elem[e]), s), fast_quotient(to_float(p.elem[e + 1]), s));
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float x = to_float(p.elem[e]);
      out.byte[e] = e4m3_bits(with_sign_of(div_rn(x, s.descale), x));
    }
  }
  return out.bits;
}

// The CTA's maximum, returned to every thread.
__device__ inline uint32_t cta_max(uint32_t m) {
  __shared__ uint32_t warp_max[kWarps];
  m = __reduce_max_sync(0xffffffffu, m);
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  m = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m = max(m, warp_max[w]);
  return m;
}

// The tile's rows as e4m3 with one descale, row r of the tile going to dst + r * row_stride.
template <typename Elem, int kVec, int kHeadDim, typename Map>
__device__ void store_e4m3_rows(const Tile<Elem, kVec, kHeadDim, Map>& tile, const Scale& scale, uint8_t* dst,
                                int64_t row_stride, int valid_rows) {
  using Bits = typename Fp8Bits<kVec>::type;
#pragma unroll
  for (int i = 0; i < Map::kSteps; ++i)
    if (Map::row(i) < valid_rows)
      *reinterpret_cast<Bits*>(dst + Map::row(i) * row_stride + Map::pack(i) * kVec) =
          to_e4m3(tile.packs[i], scale);
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

// The tile as V^T e4m3 in the fp8 key order: rounded and staged in shared memory, then
// written as whole 128-byte rows, row d of the tile's V^T going to dst + d * dst_row_stride.
template <typename Elem, int kVec, int kHeadDim>
__device__ void store_e4m3_transposed(const Tile<Elem, kVec, kHeadDim, TransposeMap<kVec, kHeadDim>>& tile,
                                      const Scale& scale, uint8_t* dst, int64_t dst_row_stride) {
  using Map = TransposeMap<kVec, kHeadDim>;
  __shared__ uint32_t staged[kHeadDim * kStagedRowWords];
  uint8_t* staged_bytes = reinterpret_cast<uint8_t*>(staged);
#pragma unroll
  for (int i = 0; i < Map::kSteps; ++i) {
    union {
      typename Fp8Bits<kVec>::type bits;
      uint8_t byte[kVec];
    } e4m3;
    e4m3.bits = to_e4m3(tile.packs[i], scale);
    const int position = key_position(Map::row(i));
#pragma unroll
    for (int e = 0; e < kVec; ++e)
      staged_bytes[(Map::pack(i) * kVec + e) * kStagedRowWords * 4 + position] = e4m3.byte[e];
  }
  __syncthreads();

  constexpr int kLanesPerRow = kBlockSize / 16;
  const int chunk = threadIdx.x % kLanesPerRow;
  for (int d = threadIdx.x / kLanesPerRow; d < kHeadDim; d += kThreads / kLanesPerRow) {
    const uint32_t* w = staged + d * kStagedRowWords + chunk * 4;
    *reinterpret_cast<uint4*>(dst + d * dst_row_stride + chunk * 16) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

}  // namespace fp8_tiles
}  // namespace draftattn
