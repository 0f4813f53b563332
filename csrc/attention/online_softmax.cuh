// Online softmax over the rows of a warpgroup-GEMM accumulator. Each thread holds two
// rows of the 64-row slice; the four threads of a quad share a row, so row reductions
// are two xor-shuffles.
#pragma once

#include <cmath>
#include <cute/tensor.hpp>

namespace draftattn::sm90 {
using namespace cute;

// ((2, 2, N/8), M, N) accumulator layout -> ((2, M), (2, N/8, N)) = (rows, columns).
template <class Layout>
__device__ __forceinline__ auto as_rows_cols(Layout layout) {
  return make_layout(make_layout(get<0, 1>(layout), get<1>(layout)),
                     make_layout(get<0, 0>(layout), get<0, 2>(layout), get<2>(layout)));
}

// The larger of a and b; with kKeepNaN, NaN if either is (max.NaN) rather than the other.
template <bool kKeepNaN>
__device__ __forceinline__ float max_of(float a, float b) {
  if constexpr (kKeepNaN) {
    float larger;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(larger) : "f"(a), "f"(b));
    return larger;
  } else {
    return fmaxf(a, b);
  }
}

template <bool kKeepNaN>
__device__ __forceinline__ float quad_max(float x) {
  x = max_of<kKeepNaN>(x, __shfl_xor_sync(0xffffffff, x, 1));
  return max_of<kKeepNaN>(x, __shfl_xor_sync(0xffffffff, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  return x + __shfl_xor_sync(0xffffffff, x, 2);
}

// 2^x for x in (-inf, 8], linear between powers of two (Schraudolph's approximation), from
// two FP32-pipe instructions instead of one MUFU.EX2: y = sat(0.5 + (8 - x) / 256) is one
// FFMA.SAT (x = score * scale - shift folded in), and since y's bits grow linearly over
// [0.5, 1], the bits of 2^x come from one IMAD on them. The saturation clamps x at -120
// (and -inf, masked keys, to 2^-120). Within each octave the result is (1 + f) / 2^f times
// 2^x, 1 to 1.0615; the constant divides by the mean of that, 1.0407, so a row's sum and
// log-sum-exp are unbiased for spread-out rows and at most 3% low for a row one key dominates.
struct LinearExp2 {
  // bits(2^x) = kBits - (bits(y) << 7): 0x43800000 (= 256) at y = 0.5, less log2(1.0407) * 2^23.
  static constexpr uint32_t kBits = 0xC3800000u - uint32_t(0.0575327 * 8388608.0 + 0.5);
  // y for score s: fma(s, step_scale, row_bias), with these two factors of the step and row.
  __device__ __forceinline__ static float step_scale(float scale_log2) { return scale_log2 * (-1.f / 256.f); }
  __device__ __forceinline__ static float row_bias(float shift) { return 0.5f + (8.f + shift) * (1.f / 256.f); }
  __device__ __forceinline__ static float eval(float score, float step_scale, float row_bias) {
    float y;
    asm("fma.rn.ftz.sat.f32 %0, %1, %2, %3;" : "=f"(y) : "f"(score), "f"(step_scale), "f"(row_bias));
    return __uint_as_float(kBits - (__float_as_uint(y) << 7));
  }
};

// kTrackSums: the softmax adds up each row's probabilities itself; otherwise the caller
// gets the row sums elsewhere (from the tensor cores) and hands them to finalize().
// kLinearPer16: of every 16 columns, how many take LinearExp2 instead of MUFU.EX2 (fp8 only:
// its P keeps 3 mantissa bits).
template <int kRows, bool kTrackSums, int kLinearPer16 = 0>
struct OnlineSoftmax {
  float row_max[kRows];  // in log2 units: max of score * scale_log2
  float row_sum[kRows];  // this thread's partial sum (kTrackSums); quad-reduced in totals()
  float offset_log2;     // probabilities come out scaled by 2^offset_log2 (fp8 P uses [0, 256])

  __device__ __forceinline__ explicit OnlineSoftmax(float offset_log2_) : offset_log2(offset_log2_) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      row_max[r] = -INFINITY;
      row_sum[r] = 0.f;
    }
  }

  // Turns one step's scores into unnormalised probabilities in place. The step's columns
  // come in kParts equal parts, one per block of keys, and part b has its own scale_log2[b]
  // (> 0): the softmax scale times log2(e), times its block's fp8 dequantisation factors. Returns,
  // per row, the factor by which everything accumulated so far must shrink because the row
  // maximum grew; the caller applies it to the output once the previous PV GEMM is done.
  // kEndBlockAfterMax: end the basic block between the row maxima and the exponentials
  // (see end_block_on), so a wgmma wait that follows lands there, not above the maxima.
  template <bool kEndBlockAfterMax, int kParts, class ScoresRC>
  __device__ __forceinline__ void update(ScoresRC& scores, float (&correction)[kRows],
                                         const float (&scale_log2)[kParts]) {
    static_assert(decltype(size<0>(scores))::value == kRows);
    constexpr int kCols = decltype(size<1>(scores))::value;
    static_assert(kCols % kParts == 0);
    constexpr int kPartCols = kCols / kParts;
    // LinearExp2 turns a NaN score into a finite probability (its saturation flushes NaN to
    // 0), so NaN reaches the row through its maximum instead, and finalize() makes a row
    // whose maximum is NaN a NaN row.
    constexpr bool kKeepNaN = kLinearPer16 > 0;
    float new_max[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float step_max = -INFINITY;
#pragma unroll
      for (int b = 0; b < kParts; ++b) {
        float part_max = -INFINITY;
#pragma unroll
        for (int c = b * kPartCols; c < (b + 1) * kPartCols; ++c) part_max = max_of<kKeepNaN>(part_max, scores(r, c));
        step_max = max_of<kKeepNaN>(step_max, part_max * scale_log2[b]);
      }
      new_max[r] = max_of<kKeepNaN>(row_max[r], quad_max<kKeepNaN>(step_max));
    }
    if constexpr (kEndBlockAfterMax) end_block_on(new_max);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      // A row that has seen only masked columns keeps max -inf; subtract 0 then, not -inf.
      const float finite_max = new_max[r] == -INFINITY ? 0.f : new_max[r];
      correction[r] = exp2f(row_max[r] - finite_max);
      const float shift = finite_max - offset_log2;
      row_max[r] = new_max[r];
      float sum = row_sum[r] * correction[r];
      const float linear_bias = LinearExp2::row_bias(shift);
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const float prob = c % 16 < kLinearPer16
                               ? LinearExp2::eval(scores(r, c), LinearExp2::step_scale(scale_log2[c / kPartCols]), linear_bias)
                               : exp2f(scores(r, c) * scale_log2[c / kPartCols] - shift);
        scores(r, c) = prob;
        if constexpr (kTrackSums) sum += prob;
      }
      if constexpr (kTrackSums) row_sum[r] = sum;
    }
  }

  // Ends the basic block once `values` are computed. ptxas places a wgmma wait as early as
  // its basic block allows, so the wait for the in-flight PV GEMM would move above the
  // softmax and the two would not overlap. A branch on the values keeps everything they
  // depend on above the wait; its body (a zero-length sleep) runs only for NaN values and
  // changes nothing.
  __device__ __forceinline__ static void end_block_on(const float (&values)[kRows]) {
    float total = 0.f;
#pragma unroll
    for (int r = 0; r < kRows; ++r) total += values[r];
    if (__any_sync(0xffffffff, total != total)) asm volatile("nanosleep.u32 0;");
  }

  // Ends the basic block after this step's exponentials (every row sum depends on them).
  __device__ __forceinline__ void end_block() const {
    static_assert(kTrackSums, "without the sums, nothing here depends on every exponential");
    end_block_on(row_sum);
  }

  // Shrinks the rows of each accumulator (the output, the row sums from the tensor cores)
  // by this step's corrections. Once the row maxima settle most steps leave them all at 1,
  // and the warp skips the multiplies.
  template <class... AccumulatorRC>
  __device__ __forceinline__ static void rescale(const float (&correction)[kRows], AccumulatorRC&... accumulators) {
    bool moved = false;
#pragma unroll
    for (int r = 0; r < kRows; ++r) moved |= correction[r] != 1.f;
    if (!__any_sync(0xffffffff, moved)) return;
    (scale_rows(accumulators, correction), ...);
  }

  template <class AccumulatorRC>
  __device__ __forceinline__ static void scale_rows(AccumulatorRC& rows, const float (&factor)[kRows]) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int c = 0; c < size<1>(rows); ++c) rows(r, c) *= factor[r];
    }
  }

  // Each row's sum over the quad that shares it (kTrackSums).
  __device__ __forceinline__ void totals(float (&total)[kRows]) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r) total[r] = quad_sum(row_sum[r]);
  }

  // Normalises the output rows by their probability totals (times out_scale, V's
  // dequantisation factor) and returns each row's natural-log sum-exp (-inf for a row that
  // attended to nothing, whose output becomes 0; NaN for a row that met a NaN score, where
  // LinearExp2 is used).
  template <class OutRC>
  __device__ __forceinline__ void finalize(OutRC& out, float (&lse)[kRows], float out_scale,
                                           const float (&totals)[kRows]) const {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float total = totals[r];
      const bool empty = !(total > 0.f);
      const bool nan_row = kLinearPer16 > 0 && row_max[r] != row_max[r];
      const float inv = nan_row ? NAN : empty ? 0.f : out_scale / total;
      lse[r] = nan_row ? NAN : empty ? -INFINITY : (row_max[r] - offset_log2 + log2f(total)) * 0.6931471805599453f;
#pragma unroll
      for (int c = 0; c < size<1>(out); ++c) out(r, c) *= inv;
    }
  }
};

}  // namespace draftattn::sm90
