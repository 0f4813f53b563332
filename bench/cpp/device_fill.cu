#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "device_fill.h"

namespace bench {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 4096;  // grid-stride loops cover the rest

// A counter-based generator (splitmix64's finalizer): no state to carry between threads.
__device__ __forceinline__ float uniform01(uint64_t seed, int64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + uint64_t(i) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (1.0f / 16777216.0f);  // top 24 bits: exact in fp32
}

template <class T>
__global__ void fill_uniform_kernel(T* dst, int64_t count, float lo, float hi, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = T(lo + (hi - lo) * uniform01(seed, i));
}

template <class T>
__global__ void to_float_kernel(const T* src, int64_t count, float* dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = float(src[i]);
}

int grid_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return int(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

}  // namespace

cudaError_t fill_uniform(void* dst, draftattn::DType dtype, int64_t count, float lo, float hi, uint64_t seed,
                         cudaStream_t stream) {
  if (dtype == draftattn::DType::kBFloat16)
    fill_uniform_kernel<<<grid_for(count), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), count, lo, hi, seed);
  else if (dtype == draftattn::DType::kFloat16)
    fill_uniform_kernel<<<grid_for(count), kThreads, 0, stream>>>(static_cast<__half*>(dst), count, lo, hi, seed);
  else
    fill_uniform_kernel<<<grid_for(count), kThreads, 0, stream>>>(static_cast<__nv_fp8_e4m3*>(dst), count, lo, hi, seed);
  return cudaGetLastError();
}

cudaError_t fill_uniform(float* dst, int64_t count, float lo, float hi, uint64_t seed, cudaStream_t stream) {
  fill_uniform_kernel<<<grid_for(count), kThreads, 0, stream>>>(dst, count, lo, hi, seed);
  return cudaGetLastError();
}

cudaError_t to_float(const void* src, draftattn::DType dtype, int64_t count, float* dst, cudaStream_t stream) {
  if (dtype == draftattn::DType::kBFloat16)
    to_float_kernel<<<grid_for(count), kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(src), count, dst);
  else
    to_float_kernel<<<grid_for(count), kThreads, 0, stream>>>(static_cast<const __half*>(src), count, dst);
  return cudaGetLastError();
}

}  // namespace bench
