// (batch, tokens, heads, head_dim) activations handed to the plain CUDA launchers of
// include/draftattn/drafting.h, shared by the CUDA op files.
#pragma once
#include <ATen/core/Tensor.h>

#include "draftattn/drafting.h"

namespace draftattn {

// The launchers take a unit head_dim stride; any other layout is copied once.
inline at::Tensor unit_last_stride(const at::Tensor& x) { return x.stride(3) == 1 ? x : x.contiguous(); }

inline TokenTensor token_tensor(const at::Tensor& x) {
  return {x.data_ptr(), x.stride(0), x.stride(1), x.stride(2)};
}

}  // namespace draftattn
