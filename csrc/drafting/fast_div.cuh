// Division by a run-time constant through a multiply-high (Granlund-Montgomery), for the
// per-entry row index of flat scores: an integer division there costs ~20 instructions.
#pragma once
#include <cstdint>

namespace draftattn {

struct FastDiv {
  uint32_t divisor, magic, shift;

  static FastDiv make(uint32_t d) {
    uint32_t l = 0;
    while ((uint64_t(1) << l) < d) ++l;
    const uint64_t magic = ((uint64_t(1) << 32) * ((uint64_t(1) << l) - d)) / d + 1;
    return {d, uint32_t(magic), l};
  }

  // n / divisor for any 32-bit n.
  __device__ uint32_t div(uint32_t n) const {
    return uint32_t((uint64_t(__umulhi(n, magic)) + n) >> shift);
  }
};

}  // namespace draftattn
