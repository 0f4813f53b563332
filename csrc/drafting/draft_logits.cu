// Draft logits per head: scores[i][j] = (sum_d q[i][d] k[j][d]) * scale, plain fp32 FMA (no
// TF32: the selection compares these values and must agree with the fp32 reference).
// 128 x 128 output tile per CTA, 256 threads with 8 x 8 outputs each; q and k tiles are
// staged transposed (depth-major) so each thread reads its 8 rows / 8 columns as float4s.
// The next depth slice is loaded into registers while the current one is multiplied, into
// the other of two shared buffers, so one barrier per slice suffices.
// Every output sums d = 0..D-1 in order, so equal inputs give bit-equal logits (tie rule).
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
constexpr int kPad = 4;  // keeps the transposed staging stores off one bank, rows 16B aligned

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

__device__ inline void stage(float (*tile)[kTile + kPad], const float4 (&v)[2]) {
  const int r = threadIdx.x / 4, d = (threadIdx.x % 4) * 4;
  for (int h = 0; h < 2; ++h) {
    tile[d + 0][r + 64 * h] = v[h].x;
    tile[d + 1][r + 64 * h] = v[h].y;
    tile[d + 2][r + 64 * h] = v[h].z;
    tile[d + 3][r + 64 * h] = v[h].w;
  }
}

// Reduction over the 16 threads of a half warp that share a row (xor tree: every lane ends
// with the same bits).
__device__ inline float half_warp_max(float v) {
  for (int o = 8; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ inline float half_warp_sum(float v) {
  for (int o = 8; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Two CTAs per SM (at most 128 registers): one CTA's barrier waits overlap the other's FMAs.
__global__ void __launch_bounds__(kThreads, 2) draft_logits_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                                float* __restrict__ scores,
                                                                float2* __restrict__ partials, int S, int D,
                                                                int64_t head_stride, float scale, bool vec4,
                                                                uint32_t* __restrict__ states) {
  __shared__ __align__(16) float q_tile[2][kDepth][kTile + kPad];
  __shared__ __align__(16) float k_tile[2][kDepth][kTile + kPad];

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
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  Slice next = load_slice(q, k, row0, col0, 0, S, D, vec4);
  int buf = 0;
  for (int d0 = 0; d0 < D; d0 += kDepth, buf ^= 1) {
    stage(q_tile[buf], next.q);
    stage(k_tile[buf], next.k);
    __syncthreads();
    if (d0 + kDepth < D) next = load_slice(q, k, row0, col0, d0 + kDepth, S, D, vec4);
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      float a[8], b[8];
      *reinterpret_cast<float4*>(&a[0]) = *reinterpret_cast<const float4*>(&q_tile[buf][d][ty * 4]);
      *reinterpret_cast<float4*>(&a[4]) = *reinterpret_cast<const float4*>(&q_tile[buf][d][64 + ty * 4]);
      *reinterpret_cast<float4*>(&b[0]) = *reinterpret_cast<const float4*>(&k_tile[buf][d][tx * 4]);
      *reinterpret_cast<float4*>(&b[4]) = *reinterpret_cast<const float4*>(&k_tile[buf][d][64 + tx * 4]);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }

  const int tiles = gridDim.x;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    float x[8];
    float m = -FLT_MAX;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
      x[j] = acc[i][j] * scale;
      if (col < S) m = fmaxf(m, x[j]);
    }
    m = half_warp_max(m);
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
      if (col < S) sum += expf(x[j] - m);
    }
    sum = half_warp_sum(sum);
    if (row >= S) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
      if (col < S) scores[int64_t(row) * S + col] = x[j];
    }
    if (tx == 0) partials[(head * S + row) * tiles + blockIdx.x] = make_float2(m, sum);
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
