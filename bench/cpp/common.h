// What every C++ microbenchmark needs: CUDA error checks, device buffers, the card's name and
// the dtype flag.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "draftattn/sparse_attn.h"

namespace bench {

// A benchmark that keeps going after a failed CUDA call reports numbers for work that never
// ran, so every call is checked and the first failure ends the process.
inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "%s:%d: %s failed: %s\n", file, line, what, cudaGetErrorString(err));
  std::exit(2);
}
#define CUDA_CHECK(call) ::bench::check_cuda((call), #call, __FILE__, __LINE__)

// Owns `count` elements of device memory (never copied: one owner, freed once).
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count = 0) : count_(count) {
    if (count > 0) CUDA_CHECK(cudaMalloc(&data_, count * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return data_; }
  size_t count() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

inline cudaDeviceProp current_device_properties() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop;
}

inline bool parse_dtype(const std::string& name, draftattn::DType* dtype) {
  if (name == "bf16") *dtype = draftattn::DType::kBFloat16;
  else if (name == "fp16") *dtype = draftattn::DType::kFloat16;
  else if (name == "fp8") *dtype = draftattn::DType::kFloat8E4M3;
  else return false;
  return true;
}

inline const char* dtype_name(draftattn::DType dtype) {
  switch (dtype) {
    case draftattn::DType::kBFloat16: return "bf16";
    case draftattn::DType::kFloat16: return "fp16";
    case draftattn::DType::kFloat8E4M3: return "fp8";
  }
  return "?";
}

constexpr size_t kHalfBytes = 2;  // both activation dtypes are 16-bit

}  // namespace bench
