// Draft logits per head: scores[i][j] = (sum_d q[i][d] k[j][d]) * scale in fp32, on the
// tensor cores with three TF32 products per term ("3xTF32"): each input is split into a
// TF32 part and the TF32 rounding of its remainder, and big*big + big*small + small*big is
// accumulated in fp32, which keeps about fp32 accuracy (plain TF32 would keep 11 bits, too
// few for a selection that must agree with the fp32 reference at its cut) for a third of
// the cost of fp32 FMAs. Small integer-valued inputs stay exact, and every output runs the
// same instruction sequence on its own row of q and column of k, so equal inputs give
// bit-equal logits (tie rule).
// 128 x 128 output tile per CTA, 8 warps of 64 x 32 (m16n8k8 MMAs, 4 x 4 per warp and
// depth step). q and k are staged row-major in depth slices of 16; the next slice is loaded
// into registers while the current one is multiplied, into the other of two shared
// buffers, so one barrier per slice suffices.
//
// Epilogue: per row, the max over the tile's columns and the sum of exp(x - max), which the
// softmax pass combines over the column tiles instead of re-reading the row for its max and
// sum. The reduction order depends on the column only, never on the row, so rows with equal
// logits get equal partials.
//
// For the global rule the CTAs of a head also zero its radix-select state (the softmax pass
// is the first to use it), which saves a memset launch.
#include <cfloat>
#include <cmath>

#include "draft_steps.h"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr int kTile = kDraftLogitsTile;
constexpr int kDepth = 16;
constexpr int kThreads = 256;
constexpr int kStride = kDepth + 4;  // row stride of the staged slices: fragment loads hit 32 banks
constexpr int kWarpRows = 64, kWarpCols = 32;
constexpr int kWarpsN = kTile / kWarpCols;  // 4 warps side by side along the columns
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 8;
constexpr int kTilesM = kWarpRows / kMmaM, kTilesN = kWarpCols / kMmaN;

struct Slice {
  float4 q[2], k[2];  // rows r and r + 64, depth 4c .. 4c+3 of the slice
};

// Thread t stages rows t/4 and t/4 + 64 and depth quad t%4 of a 128 x 16 slice.
__device__ inline float4 load_quad(const float* x, int row, int d, int S, int D, bool vec4) {
  if (row >= S) return make_float4(0.f, 0.f, 0.f, 0.f);
  const float* p = x + int64_t(row) * D + d;
  if (vec4 && d + 4 <= D) return *reinterpret_cast<const float4*>(p);
  return make_float4(d < D ? p[0] : 0.f, d + 1 < D ? p[1] : 0.f, d + 2 < D ? p[2] : 0.f, d + 3 < D ? p[3] : 0.f);
}

__device__ inline Slice load_slice(const float* q, const float* k, int row0, int col0, int d0, int S, int D,
                                   bool vec4) {
  const int r = threadIdx.x / 4, d = d0 + (threadIdx.x % 4) * 4;
  Slice s;
  for (int h = 0; h < 2; ++h) {
    s.q[h] = load_quad(q, row0 + r + 64 * h, d, S, D, vec4);
    s.k[h] = load_quad(k, col0 + r + 64 * h, d, S, D, vec4);
  }
  return s;
}

__device__ inline void stage(float (*tile)[kStride], const float4 (&v)[2]) {
  const int r = threadIdx.x / 4, d = (threadIdx.x % 4) * 4;
  for (int h = 0; h < 2; ++h) *reinterpret_cast<float4*>(&tile[r + 64 * h][d]) = v[h];
}

// x = big + small + (what neither keeps, ~2^-22 |x|): both parts TF32 (low 13 bits zero).
struct SplitTf32 {
  uint32_t big, small;
};

__device__ inline SplitTf32 split_tf32(float x) {
  uint32_t big, small;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(big) : "f"(x));
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(small) : "f"(x - __uint_as_float(big)));
  return {big, small};
}

// acc += a * b for one 16 x 8 x 8 step (A row-major, B column-major fragments).
__device__ inline void mma_tf32(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Reduction over the 4 lanes of a quad, which hold one row's columns (xor tree: every lane
// ends with the same bits).
__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Two CTAs per SM (at most 128 registers): one CTA's barrier waits overlap the other's MMAs.
__global__ void __launch_bounds__(kThreads, 2) draft_logits_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                                float* __restrict__ scores,
                                                                float2* __restrict__ partials, int S, int D,
                                                                int64_t head_stride, float scale, bool vec4,
                                                                uint32_t* __restrict__ states) {
  __shared__ __align__(16) float q_tile[2][kTile][kStride];
  __shared__ __align__(16) float k_tile[2][kTile][kStride];
  __shared__ float warp_max[kWarpsN][kTile], warp_sum[kWarpsN][kTile];

  const int64_t head = blockIdx.z;
  if (states != nullptr) {  // this CTA's share of the head's state words
    const int ctas = gridDim.x * gridDim.y, cta = blockIdx.y * gridDim.x + blockIdx.x;
    const int per_cta = (kHeadSelectStateWords + ctas - 1) / ctas;
    uint32_t* words = states + head * kHeadSelectStateWords;
    const int end = min(kHeadSelectStateWords, (cta + 1) * per_cta);
    for (int i = cta * per_cta + threadIdx.x; i < end; i += kThreads) words[i] = 0u;
  }
  q += head * S * D;
  k += head * S * D;
  scores += head * head_stride;
  const int row0 = blockIdx.y * kTile, col0 = blockIdx.x * kTile;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int group = lane / 4, quad = lane % 4;  // MMA fragment coordinates
  const int warp_row = (warp / kWarpsN) * kWarpRows, warp_col = (warp % kWarpsN) * kWarpCols;

  float acc[kTilesM][kTilesN][4];
#pragma unroll
  for (int i = 0; i < kTilesM; ++i)
#pragma unroll
    for (int j = 0; j < kTilesN; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.f;

  Slice next = load_slice(q, k, row0, col0, 0, S, D, vec4);
  int buf = 0;
  for (int d0 = 0; d0 < D; d0 += kDepth, buf ^= 1) {
    stage(q_tile[buf], next.q);
    stage(k_tile[buf], next.k);
    __syncthreads();
    if (d0 + kDepth < D) next = load_slice(q, k, row0, col0, d0 + kDepth, S, D, vec4);
#pragma unroll
    for (int d = 0; d < kDepth; d += kMmaK) {
      uint32_t b_big[kTilesN][2], b_small[kTilesN][2];
#pragma unroll
      for (int j = 0; j < kTilesN; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const SplitTf32 v = split_tf32(k_tile[buf][warp_col + j * kMmaN + group][d + quad + 4 * h]);
          b_big[j][h] = v.big;
          b_small[j][h] = v.small;
        }
#pragma unroll
      for (int i = 0; i < kTilesM; ++i) {
        uint32_t a_big[4], a_small[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) {  // (row, depth) = (group + 8 (c % 2), quad + 4 (c / 2))
          const SplitTf32 v = split_tf32(q_tile[buf][warp_row + i * kMmaM + group + 8 * (c % 2)][d + quad + 4 * (c / 2)]);
          a_big[c] = v.big;
          a_small[c] = v.small;
        }
#pragma unroll
        for (int j = 0; j < kTilesN; ++j) {  // small terms first: they are the least significant
          mma_tf32(acc[i][j], a_small, b_big[j]);
          mma_tf32(acc[i][j], a_big, b_small[j]);
          mma_tf32(acc[i][j], a_big, b_big[j]);
        }
      }
    }
  }

  // acc[i][j][c] holds row warp_row + 16i + group + 8 (c / 2), column warp_col + 8j + 2 quad + c % 2.
#pragma unroll
  for (int i = 0; i < kTilesM; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float m = -FLT_MAX;
#pragma unroll
      for (int j = 0; j < kTilesN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          acc[i][j][2 * h + c] *= scale;
          if (col0 + warp_col + j * kMmaN + 2 * quad + c < S) m = fmaxf(m, acc[i][j][2 * h + c]);
        }
      m = quad_max(m);
      if (quad == 0) warp_max[warp % kWarpsN][warp_row + i * kMmaM + group + 8 * h] = m;
    }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kTilesM; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = warp_row + i * kMmaM + group + 8 * h;
      float m = warp_max[0][r];
#pragma unroll
      for (int w = 1; w < kWarpsN; ++w) m = fmaxf(m, warp_max[w][r]);
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kTilesN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c)
          if (col0 + warp_col + j * kMmaN + 2 * quad + c < S) sum += expf(acc[i][j][2 * h + c] - m);
      sum = quad_sum(sum);
      if (quad == 0) warp_sum[warp % kWarpsN][r] = sum;
      const int row = row0 + r;
      if (row >= S) continue;
      float* out = scores + int64_t(row) * S;
#pragma unroll
      for (int j = 0; j < kTilesN; ++j) {
        const int col = col0 + warp_col + j * kMmaN + 2 * quad;
        const float x0 = acc[i][j][2 * h], x1 = acc[i][j][2 * h + 1];
        if (S % 2 == 0 && col + 1 < S) {  // even S: every row starts 8-byte aligned
          *reinterpret_cast<float2*>(out + col) = make_float2(x0, x1);
        } else {
          if (col < S) out[col] = x0;
          if (col + 1 < S) out[col + 1] = x1;
        }
      }
    }
  __syncthreads();
  const int tiles = gridDim.x;
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    const int row = row0 + r;
    if (row >= S) break;
    float m = warp_max[0][r], sum = warp_sum[0][r];
#pragma unroll
    for (int w = 1; w < kWarpsN; ++w) {
      m = fmaxf(m, warp_max[w][r]);
      sum += warp_sum[w][r];
    }
    partials[(head * S + row) * tiles + blockIdx.x] = make_float2(m, sum);
  }
}

}  // namespace

cudaError_t launch_draft_logits(const DraftSelectArgs& a, const DraftWorkspace& w, cudaStream_t stream) {
  const int tiles = draft_column_tiles(a.num_regions);
  // Same rounding as the reference: the scale is a float multiplied into the fp32 product.
  const float scale = float(1.0 / std::sqrt(double(a.head_dim)));
  const bool vec4 = a.head_dim % 4 == 0 && reinterpret_cast<uintptr_t>(a.q_pooled) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(a.k_pooled) % 16 == 0;
  draft_logits_kernel<<<dim3(tiles, tiles, a.batch_heads), kThreads, 0, stream>>>(
      a.q_pooled, a.k_pooled, w.scores, w.row_partials, a.num_regions, a.head_dim, w.head_stride, scale, vec4,
      reinterpret_cast<uint32_t*>(w.states));
  return cudaGetLastError();
}

}  // namespace draftattn
