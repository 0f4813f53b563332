// CUDA implementation of draftattn::sparse_attn: the Hopper kernel (sm_90) for every
// dtype / head dim compiled into this build, the ATen reference elsewhere.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <limits>
#include <optional>

#include "checks.h"
#include "draftattn/sparse_attn.h"
#include "reference.h"

namespace draftattn {
namespace {

struct DeviceFacts {
  bool sm90;
  int num_sms;
};

// Read once per device: attribute queries are cheap but not free on every call.
const DeviceFacts& device_facts(c10::DeviceIndex device) {
  static std::array<std::optional<DeviceFacts>, 64> cached;
  auto& facts = cached.at(device);
  if (!facts.has_value()) {
    int major = 0, minor = 0, sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    facts = DeviceFacts{major == 9 && minor == 0, sms};
  }
  return *facts;
}

// TMA needs 16-byte aligned base addresses and 16-byte multiples for every outer stride.
bool tma_compatible(const at::Tensor& t) {
  const int64_t elem = t.element_size();
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && (t.stride(0) * elem) % 16 == 0 &&
         (t.stride(1) * elem) % 16 == 0 && (t.stride(2) * elem) % 16 == 0;
}

at::Tensor tma_ready(const at::Tensor& t) { return tma_compatible(t) ? t : t.contiguous(); }

bool kernel_applies(const DeviceFacts& facts, DType dtype, const at::Tensor& q, int64_t num_blocks) {
  return facts.sm90 && sparse_attn_sm90_available(dtype, q.size(3)) &&
         num_blocks * q.size(2) * q.size(0) <= std::numeric_limits<int32_t>::max();
}

// Launches the kernel with everything but V (and the fp8 scales) filled from the
// arguments; `finish` sets those. Returns (out, lse).
template <class Finish>
std::tuple<at::Tensor, at::Tensor> launch(const at::Tensor& q, const at::Tensor& k, const at::Tensor& kv_indices_in,
                                          const at::Tensor& kv_counts_in,
                                          const std::optional<at::Tensor>& block_lens_in, std::optional<double> scale,
                                          int64_t num_blocks, const DeviceFacts& facts, DType dtype,
                                          at::ScalarType out_dtype, Finish&& finish) {
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  const at::Tensor kv_indices = kv_indices_in.stride(3) == 1 ? kv_indices_in : kv_indices_in.contiguous();
  const at::Tensor kv_counts = kv_counts_in.stride(2) == 1 ? kv_counts_in : kv_counts_in.contiguous();
  std::optional<at::Tensor> block_lens;
  if (block_lens_in.has_value()) block_lens = block_lens_in->contiguous();

  at::Tensor out = at::empty(q.sizes(), q.options().dtype(out_dtype));
  at::Tensor lse = at::empty({batch, heads, tokens}, q.options().dtype(at::kFloat));
  if (batch == 0 || heads == 0) return {out, lse};

  SparseAttnParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.out = out.data_ptr();
  p.lse = lse.data_ptr<float>();
  p.q_batch_stride = q.stride(0), p.q_token_stride = q.stride(1), p.q_head_stride = q.stride(2);
  p.k_batch_stride = k.stride(0), p.k_token_stride = k.stride(1), p.k_head_stride = k.stride(2);
  p.o_batch_stride = out.stride(0), p.o_token_stride = out.stride(1), p.o_head_stride = out.stride(2);
  p.kv_indices = kv_indices.data_ptr<int32_t>();
  p.kv_counts = kv_counts.data_ptr<int32_t>();
  p.block_lens = block_lens.has_value() ? block_lens->data_ptr<int32_t>() : nullptr;
  p.lens_batch_stride = block_lens.has_value() && block_lens->dim() == 2 ? block_lens->stride(0) : 0;
  p.idx_batch_stride = kv_indices.stride(0), p.idx_head_stride = kv_indices.stride(1);
  p.idx_block_stride = kv_indices.stride(2);
  p.cnt_batch_stride = kv_counts.stride(0), p.cnt_head_stride = kv_counts.stride(1);
  p.max_blocks = static_cast<int>(kv_indices.size(3));
  p.batch = static_cast<int>(batch);
  p.tokens = static_cast<int>(tokens);
  p.heads = static_cast<int>(heads);
  p.head_dim = static_cast<int>(head_dim);
  p.num_blocks = static_cast<int>(num_blocks);
  p.scale = static_cast<float>(scale.value_or(1.0 / std::sqrt(static_cast<double>(head_dim))));
  p.num_sms = facts.num_sms;
  at::Tensor workspace = at::empty({sparse_attn_workspace_ints(p.batch, p.heads, p.num_blocks)}, q.options().dtype(at::kInt));
  p.workspace = workspace.data_ptr<int32_t>();
  finish(p);

  C10_CUDA_CHECK(sparse_attn_sm90(p, dtype, c10::cuda::getCurrentCUDAStream().stream()));
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> sparse_attn_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                    const at::Tensor& v_in, const at::Tensor& kv_indices,
                                                    const at::Tensor& kv_counts,
                                                    const std::optional<at::Tensor>& block_lens,
                                                    std::optional<double> scale) {
  const int64_t num_blocks =
      checks::check_sparse_attn_inputs(q_in, k_in, v_in, kv_indices, kv_counts, block_lens, scale);
  const DType dtype = q_in.scalar_type() == at::kBFloat16 ? DType::kBFloat16 : DType::kFloat16;
  const c10::cuda::CUDAGuard guard(q_in.device());
  const DeviceFacts& facts = device_facts(q_in.device().index());
  if (!kernel_applies(facts, dtype, q_in, num_blocks)) {
    return reference::sparse_attn(q_in, k_in, v_in, kv_indices, kv_counts, block_lens, scale);
  }
  const at::Tensor q = tma_ready(q_in), k = tma_ready(k_in), v = tma_ready(v_in);
  return launch(q, k, kv_indices, kv_counts, block_lens, scale, num_blocks, facts, dtype, q.scalar_type(),
                [&](SparseAttnParams& p) {
                  p.v = v.data_ptr();
                  p.v_batch_stride = v.stride(0), p.v_token_stride = v.stride(1), p.v_head_stride = v.stride(2);
                });
}

std::tuple<at::Tensor, at::Tensor> sparse_attn_fp8_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                        const at::Tensor& v_t_in, const at::Tensor& kv_indices,
                                                        const at::Tensor& kv_counts, const at::Tensor& q_descale,
                                                        const at::Tensor& k_descale, const at::Tensor& v_descale,
                                                        const std::optional<at::Tensor>& block_lens,
                                                        std::optional<double> scale) {
  const int64_t num_blocks = checks::check_sparse_attn_fp8_inputs(q_in, k_in, v_t_in, kv_indices, kv_counts,
                                                                  q_descale, k_descale, v_descale, block_lens, scale);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const DeviceFacts& facts = device_facts(q_in.device().index());
  if (!kernel_applies(facts, DType::kFloat8E4M3, q_in, num_blocks)) {
    return reference::sparse_attn_fp8(q_in, k_in, v_t_in, kv_indices, kv_counts, q_descale, k_descale, v_descale,
                                      block_lens, scale);
  }
  const at::Tensor q = tma_ready(q_in), k = tma_ready(k_in);
  const at::Tensor v_t = tma_ready(v_t_in);
  return launch(q, k, kv_indices, kv_counts, block_lens, scale, num_blocks, facts, DType::kFloat8E4M3,
                at::kBFloat16, [&](SparseAttnParams& p) {
                  p.v = v_t.data_ptr();
                  p.v_batch_stride = v_t.stride(0), p.v_head_stride = v_t.stride(1), p.v_dim_stride = v_t.stride(2);
                  p.q_descale = q_descale.data_ptr<float>();
                  p.k_descale = k_descale.data_ptr<float>();
                  p.v_descale = v_descale.data_ptr<float>();
                });
}

}  // namespace

TORCH_LIBRARY_IMPL(draftattn, CUDA, m) {
  m.impl("sparse_attn", &sparse_attn_cuda);
  m.impl("sparse_attn_fp8", &sparse_attn_fp8_cuda);
}

}  // namespace draftattn
