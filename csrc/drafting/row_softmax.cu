// In-place row softmax of the draft logits: A = exp(x - rowmax) / rowsum, one warp per row.
// Every row reduces in the same order (lane-strided partials, then a fixed shuffle tree), so
// rows with equal logits get bit-equal probabilities and ties across rows stay ties. The
// division is IEEE (__fdiv_rn) even under --use_fast_math.
#include <cfloat>

#include "draft_steps.h"

namespace draftattn {
namespace {

constexpr int kWarps = 8;

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void __launch_bounds__(kWarps * 32) row_softmax_kernel(float* scores, int S, int64_t head_stride,
                                                                  int64_t rows) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* x = scores + (row / S) * head_stride + (row % S) * S;

  float m = -FLT_MAX;
  for (int j = lane; j < S; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (int j = lane; j < S; j += 32) sum += expf(x[j] - m);
  sum = warp_sum(sum);
  for (int j = lane; j < S; j += 32) x[j] = __fdiv_rn(expf(x[j] - m), sum);
}

}  // namespace

cudaError_t launch_row_softmax(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream) {
  const int64_t rows = int64_t(a.batch_heads) * a.num_regions;
  const int64_t ctas = (rows + kWarps - 1) / kWarps;
  row_softmax_kernel<<<unsigned(ctas), kWarps * 32, 0, stream>>>(a.scores, a.num_regions, head_stride, rows);
  return cudaGetLastError();
}

}  // namespace draftattn
