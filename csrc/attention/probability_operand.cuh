// Where the softmax probabilities P of one warpgroup's 64 query rows go as the register A
// operand of O += P V, and which score register feeds each operand slot.
//
// A thread's score accumulator holds, for rows g and g+8 of its warp's 16 rows, the key
// columns 2q, 2q+1 (+ 8 j), q = lane % 4. The 16-bit A operand wants the same columns per
// 16-key k-block, so P is S in the same order. The 8-bit A operand wants keys 4q..4q+3 and
// 16+4q..16+4q+3 of each 32-key k-block; instead of shuffling between threads, the fp8
// V^T is stored with the keys of every 32-group permuted so that operand slot 4q+i meets
// V row 2q + (i & 1) + 8 (i >> 1) (csrc/drafting or the fp8 quantisation pass writes it),
// and each thread only reorders its own registers.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/array.h>
#include <cutlass/numeric_conversion.h>

namespace draftattn::sm90 {
using namespace cute;

// The A operand of O += P V for kKeys keys per step: one (values, 1, k-block) fragment.
template <bool kFp8, int kKeys>
__device__ __forceinline__ constexpr auto probability_operand_layout() {
  if constexpr (kFp8) {
    return Layout<Shape<Shape<_4, _2, _2>, _1, Int<kKeys / 32>>>{};
  } else {
    return Layout<Shape<Shape<_2, _2, _2>, _1, Int<kKeys / 16>>>{};
  }
}

// Layout over the ((2, 2, kKeys / 8), 1, 1) score registers that lists them in operand order.
template <bool kFp8, int kKeys>
__device__ __forceinline__ constexpr auto scores_as_probability_operand() {
  if constexpr (kFp8) {
    return Layout<Shape<Shape<Shape<_2, _2>, _2, _2>, _1, Int<kKeys / 32>>,
                  Stride<Stride<Stride<_1, _4>, _2, _8>, _0, _16>>{};
  } else {
    return Layout<Shape<Shape<_2, _2, _2>, _1, Int<kKeys / 16>>, Stride<Stride<_1, _2, _4>, _0, _8>>{};
  }
}

// Writes a step's probabilities, still in the score accumulator's registers, into the A
// operand of O += P V: four probabilities per instruction pair (one 32-bit operand register).
template <bool kFp8, int kKeys, class Scores, class Operand>
__device__ __forceinline__ void to_probability_operand(const Scores& scores, Operand& operand) {
  using Element = typename Operand::value_type;
  Tensor probs = make_tensor(scores.data(), scores_as_probability_operand<kFp8, kKeys>());
  constexpr int kPerWord = 4 / sizeof(Element);
  using Word = cutlass::Array<Element, kPerWord>;
  Word* words = reinterpret_cast<Word*>(raw_pointer_cast(operand.data()));
#pragma unroll
  for (int w = 0; w < size(operand) / kPerWord; ++w) {
    cutlass::Array<float, kPerWord> values;
#pragma unroll
    for (int i = 0; i < kPerWord; ++i) values[i] = probs(w * kPerWord + i);
    words[w] = cutlass::NumericArrayConverter<Element, float, kPerWord>{}(values);
  }
}

}  // namespace draftattn::sm90
