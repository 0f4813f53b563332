// Draft logits per head: scores[i][j] = (sum_d q[i][d] k[j][d]) * scale, plain fp32 FMA (no
// TF32: the selection compares these values and must agree with the fp32 reference).
// 128 x 128 output tile per CTA, 256 threads with 8 x 8 outputs each; q and k tiles are
// staged transposed (depth-major) so each thread reads its 8 rows / 8 columns as float4s.
// Every output sums d = 0..D-1 in order, so equal inputs give bit-equal logits (tie rule).
#include <cmath>

#include "draft_steps.h"

namespace draftattn {
namespace {

constexpr int kTile = 128;
constexpr int kDepth = 16;
constexpr int kThreads = 256;
constexpr int kPad = 4;  // keeps the transposed staging stores off one bank, rows 16B aligned

__global__ void __launch_bounds__(kThreads) draft_logits_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                                float* __restrict__ scores, int S, int D,
                                                                int64_t head_stride, float scale) {
  __shared__ __align__(16) float q_tile[kDepth][kTile + kPad];
  __shared__ __align__(16) float k_tile[kDepth][kTile + kPad];

  const int64_t head = blockIdx.z;
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

  for (int d0 = 0; d0 < D; d0 += kDepth) {
    for (int e = threadIdx.x; e < kTile * kDepth; e += kThreads) {
      const int r = e / kDepth, d = d0 + e % kDepth;
      q_tile[e % kDepth][r] = (row0 + r < S && d < D) ? q[int64_t(row0 + r) * D + d] : 0.f;
      k_tile[e % kDepth][r] = (col0 + r < S && d < D) ? k[int64_t(col0 + r) * D + d] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      float a[8], b[8];
      *reinterpret_cast<float4*>(&a[0]) = *reinterpret_cast<const float4*>(&q_tile[d][ty * 4]);
      *reinterpret_cast<float4*>(&a[4]) = *reinterpret_cast<const float4*>(&q_tile[d][64 + ty * 4]);
      *reinterpret_cast<float4*>(&b[0]) = *reinterpret_cast<const float4*>(&k_tile[d][tx * 4]);
      *reinterpret_cast<float4*>(&b[4]) = *reinterpret_cast<const float4*>(&k_tile[d][64 + tx * 4]);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (row >= S) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
      if (col < S) scores[int64_t(row) * S + col] = acc[i][j] * scale;
    }
  }
}

}  // namespace

cudaError_t launch_draft_logits(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream) {
  const int tiles = (a.num_regions + kTile - 1) / kTile;
  // Same rounding as the reference: the scale is a float multiplied into the fp32 product.
  const float scale = float(1.0 / std::sqrt(double(a.head_dim)));
  draft_logits_kernel<<<dim3(tiles, tiles, a.batch_heads), kThreads, 0, stream>>>(
      a.q_pooled, a.k_pooled, a.scores, a.num_regions, a.head_dim, head_stride, scale);
  return cudaGetLastError();
}

}  // namespace draftattn
