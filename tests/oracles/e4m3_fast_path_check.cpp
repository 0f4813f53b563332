// Exhaustive CPU checks for the fast path of csrc/drafting/fp8_tiles.cuh (run by tests/test_fp8_fast_path.py):
// (1) every bf16 / fp16 amax >= kFastMinAmax, finite and every |x| <= amax of that type: e4m3 of the
//     reciprocal + two-fma quotient (sign copied from x) == e4m3 of the correctly rounded x / (amax / 448);
// (2) every finite float with |q| <= 2 * 448: the cuda_fp8 conversion (the host emulation of
//     cvt.rn.satfinite.e4m3x2.f32) == ATen's rule (fp8_tiles::e4m3_bits, ported below).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cuda_fp8.h>
// fp8_tiles::kFastMinAmax: the fast path needs amax >= 2^-100 (below it the fma residual underflows).
static const float kFastMinAmax = 0x1p-100f;
static float bits_f(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static uint32_t f_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static uint8_t e4m3_bits(float f) {
  uint32_t bits = f_bits(f);
  const uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  uint32_t result;
  if (bits > 0x7f800000u) result = 0x7f;
  else {
    bits = bits < f_bits(448.f) ? bits : f_bits(448.f);
    if (bits < (121u << 23)) {
      const uint32_t magic = 141u << 23;
      result = f_bits(bits_f(bits) + bits_f(magic)) - magic;
    } else {
      const uint32_t odd = (bits >> 20) & 1;
      bits += (uint32_t(7 - 127) << 23) + 0x7ffff + odd;
      result = bits >> 20;
    }
  }
  return uint8_t(result | (sign >> 24));
}
static float half_to_float(uint16_t h) {
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) return std::ldexp(float(m), -24);
  return std::ldexp(float(m | 0x400), int(e) - 25);
}
static void check_division(bool half) {
  const int n = half ? 0x7c00 : 0x7f80;
  float* val = new float[n];
  for (int i = 0; i < n; ++i) val[i] = half ? half_to_float(i) : bits_f(uint32_t(i) << 16);
  long long bad = 0, tested = 0;
  float min_bad = INFINITY, max_bad = 0;
  for (int a = 1; a < n; ++a) {
    const float amax = val[a];
    const float d = amax / 448.f;
    const float r = 1.f / d;
    for (int i = 0; i <= a; ++i)
      for (int s = 0; s < 2; ++s) {
        const float x = s ? -val[i] : val[i];
        const float q0 = x * r;
        const float q = std::copysign(std::fmaf(std::fmaf(-q0, d, x), r, q0), x);
        ++tested;
        if (amax >= kFastMinAmax && e4m3_bits(q) != e4m3_bits(x / d)) {
          ++bad;
          min_bad = fminf(min_bad, amax);
          max_bad = fmaxf(max_bad, amax);
        }
      }
  }
  printf("%s division: %lld pairs, %lld e4m3 mismatches (amax range %g .. %g)\n", half ? "fp16" : "bf16", tested, bad,
         min_bad, max_bad);
}
static void check_conversion() {
  long long bad = 0, tested = 0;
  const uint32_t limit = f_bits(896.f);
  for (uint32_t b = 0; b <= limit; ++b)
    for (int s = 0; s < 2; ++s) {
      const float q = bits_f(b | (s ? 0x80000000u : 0));
      ++tested;
      if (__nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3) != e4m3_bits(q)) {
        if (bad < 5) printf("  conversion mismatch at %a\n", q);
        ++bad;
      }
    }
  printf("conversion: %lld floats, %lld mismatches\n", tested, bad);
}
int main() {
  check_division(false);
  check_division(true);
  check_conversion();
}
