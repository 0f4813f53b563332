// Order-preserving map from fp32 to uint32: a < b as floats <=> key(a) < key(b) as unsigned,
// so a radix select on keys is a selection on values.
#pragma once
#include <cstdint>

namespace draftattn {

__device__ inline uint32_t order_key(float x) {
  const uint32_t bits = __float_as_uint(x);
  return bits ^ ((bits >> 31) ? 0xffffffffu : 0x80000000u);
}

__device__ inline float key_value(uint32_t key) {
  return __uint_as_float(key ^ ((key >> 31) ? 0x80000000u : 0xffffffffu));
}

}  // namespace draftattn
