// Packs of kVec 16-bit elements moved as one load/store: 8 elements = one 16-byte access,
// 1 element = the scalar path for tensors whose strides or base are not 16-byte aligned.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace draftattn {

template <int kVec> struct PackBits;
template <> struct PackBits<8> { using type = uint4; };
template <> struct PackBits<1> { using type = uint16_t; };

template <typename Elem, int kVec>
struct Pack {
  using Bits = typename PackBits<kVec>::type;
  union {
    Bits bits;
    Elem elem[kVec];
  };

  __device__ static Pack zero() {
    Pack p;
    p.bits = Bits{};
    return p;
  }
  __device__ static Pack load(const Elem* ptr) {
    Pack p;
    p.bits = *reinterpret_cast<const Bits*>(ptr);
    return p;
  }
  __device__ void store(Elem* ptr) const { *reinterpret_cast<Bits*>(ptr) = bits; }
};

__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float to_float(__half x) { return __half2float(x); }

// True when every access of kVec=8 packs is 16-byte aligned.
inline bool aligned16(const void* ptr, int64_t elem_bytes, std::initializer_list<int64_t> strides) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  for (int64_t s : strides)
    if ((s * elem_bytes) % 16 != 0) return false;
  return true;
}

}  // namespace draftattn
