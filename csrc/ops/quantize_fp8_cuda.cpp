// CUDA implementations of draftattn::quantize_fp8 (csrc/drafting/quantize_fp8.cu) and
// draftattn::to_regions_and_quantize_fp8 (csrc/drafting/to_regions_quantize_fp8.cu). fp32
// inputs, sizes the grid cannot hold and invalid arguments go to the ATen reference (which
// also raises the errors). No host syncs: every output shape follows from the arguments.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "draftattn/drafting.h"
#include "reference.h"
#include "token_tensor.h"

namespace draftattn {
namespace {

bool kernel_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const auto dtype = q.scalar_type();
  return q.dim() == 4 && (dtype == at::kHalf || dtype == at::kBFloat16) && k.scalar_type() == dtype &&
         v.scalar_type() == dtype && k.device() == q.device() && v.device() == q.device() &&
         k.sizes() == q.sizes() && v.sizes() == q.sizes() &&
         quantize_fp8_kernel_fits(q.size(0), q.size(1), q.size(2), q.size(3));
}

// The e4m3 tensors and factors both ops return, plus the workspace of v's maxima, for
// (batch, tokens, heads, head_dim) q, k; V^T spans whole 128-token blocks.
struct Fp8Outputs {
  at::Tensor q8, k8, v_t, q_descale, k_descale, v_descale, v_amax;

  Fp8Outputs(const at::Tensor& like, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim) {
    const int64_t num_blocks = (tokens + kBlockSize - 1) / kBlockSize;
    const auto e4m3 = like.options().dtype(at::kFloat8_e4m3fn);
    const auto fp32 = like.options().dtype(at::kFloat);
    q8 = at::empty({batch, tokens, heads, head_dim}, e4m3);
    k8 = at::empty({batch, tokens, heads, head_dim}, e4m3);
    v_t = at::empty({batch, heads, head_dim, num_blocks * kBlockSize}, e4m3);
    q_descale = at::empty({batch, heads, num_blocks}, fp32);
    k_descale = at::empty({batch, heads, num_blocks}, fp32);
    v_descale = at::empty({batch, heads}, fp32);
    v_amax = at::empty({batch * heads}, like.options().dtype(at::kInt));
  }

  // Points the kernel arguments (QuantizeFp8Args or RegionsFp8Args) at these tensors.
  template <class Args>
  void fill(Args& a) const {
    a.q_fp8 = static_cast<uint8_t*>(q8.data_ptr());
    a.k_fp8 = static_cast<uint8_t*>(k8.data_ptr());
    a.v_t_fp8 = static_cast<uint8_t*>(v_t.data_ptr());
    a.q_descale = q_descale.data_ptr<float>();
    a.k_descale = k_descale.data_ptr<float>();
    a.v_descale = v_descale.data_ptr<float>();
    a.v_amax = reinterpret_cast<uint32_t*>(v_amax.data_ptr<int32_t>());
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_fp8_cuda(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in) {
  if (!kernel_applies(q_in, k_in, v_in)) return reference::quantize_fp8(q_in, k_in, v_in);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  const Fp8Outputs o(q, batch, tokens, heads, head_dim);

  QuantizeFp8Args a{};
  a.q = token_tensor(q), a.k = token_tensor(k), a.v = token_tensor(v);
  o.fill(a);
  a.batch = int(batch), a.tokens = int(tokens), a.heads = int(heads), a.head_dim = int(head_dim);
  a.dtype = q.scalar_type() == at::kBFloat16 ? DType::kBFloat16 : DType::kFloat16;
  const cudaError_t err = quantize_fp8(a, c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
  TORCH_CHECK(err == cudaSuccess, "draftattn::quantize_fp8: CUDA kernel launch failed: ", cudaGetErrorString(err));
  return {o.q8, o.k8, o.v_t, o.q_descale, o.k_descale, o.v_descale};
}

using RegionsFp8Outputs =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

RegionsFp8Outputs to_regions_and_quantize_fp8_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                   const at::Tensor& v_in, int64_t frames, int64_t height,
                                                   int64_t width, int64_t region_h, int64_t region_w,
                                                   int64_t text_len, bool text_first) {
  const auto g = checks::check_to_regions_and_pool_inputs(q_in, k_in, v_in, frames, height, width, region_h,
                                                          region_w, text_len, text_first);
  const int64_t batch = q_in.size(0), heads = q_in.size(2), head_dim = q_in.size(3);
  const bool half_precision = q_in.scalar_type() == at::kHalf || q_in.scalar_type() == at::kBFloat16;
  if (!half_precision || !regions_fp8_kernel_fits(batch, heads, head_dim, g.tokens, g.num_blocks))
    return reference::to_regions_and_quantize_fp8(q_in, k_in, v_in, frames, height, width, region_h, region_w,
                                                  text_len, text_first);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  const Fp8Outputs o(q, batch, g.num_blocks * kBlockSize, heads, head_dim);
  const auto fp32 = q.options().dtype(at::kFloat);
  at::Tensor q_pooled = at::empty({batch, heads, g.num_regions, head_dim}, fp32);
  at::Tensor k_pooled = at::empty({batch, heads, g.num_regions, head_dim}, fp32);

  RegionsFp8Args a{};
  a.q = token_tensor(q), a.k = token_tensor(k), a.v = token_tensor(v);
  o.fill(a);
  a.q_pooled = q_pooled.data_ptr<float>();
  a.k_pooled = k_pooled.data_ptr<float>();
  a.batch = int(batch), a.heads = int(heads), a.head_dim = int(head_dim);
  a.dtype = q.scalar_type() == at::kBFloat16 ? DType::kBFloat16 : DType::kFloat16;
  a.layout = {int(frames), int(height), int(width), int(region_h), int(region_w), int(text_len), text_first};
  const cudaError_t err = to_regions_quantize_fp8(a, c10::cuda::getCurrentCUDAStream(q.device().index()).stream());
  TORCH_CHECK(err == cudaSuccess, "draftattn::to_regions_and_quantize_fp8: CUDA kernel launch failed: ",
              cudaGetErrorString(err));
  return {o.q8, o.k8, o.v_t, o.q_descale, o.k_descale, o.v_descale, q_pooled, k_pooled};
}

}  // namespace

TORCH_LIBRARY_IMPL(draftattn, CUDA, m) {
  m.impl("quantize_fp8", &quantize_fp8_cuda);
  m.impl("to_regions_and_quantize_fp8", &to_regions_and_quantize_fp8_cuda);
}

}  // namespace draftattn
