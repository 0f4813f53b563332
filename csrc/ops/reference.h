// Exact reference implementations of every draftattn op, written with ATen ops so they run
// on any device. Registered for the CPU key (and the CUDA key in CPU-only builds); the CUDA
// registrations call them as fallbacks. Formats: docs/CONTRACT.md.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace draftattn::reference {

std::tuple<at::Tensor, at::Tensor> sparse_attn(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                               const std::optional<at::Tensor>& block_lens,
                                               std::optional<double> scale);

std::tuple<at::Tensor, at::Tensor> sparse_attn_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v_t,
                                                   const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                                   const at::Tensor& q_descale, const at::Tensor& k_descale,
                                                   const at::Tensor& v_descale,
                                                   const std::optional<at::Tensor>& block_lens,
                                                   std::optional<double> scale);

// q, k, v (batch, tokens, heads, head_dim) in region-major order -> e4m3 q, k (same
// layout), e4m3 V^T (batch, heads, head_dim, num_blocks*128) in the fp8 key order, and
// fp32 dequantisation factors: q, k per (batch, head, block), v per (batch, head).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_fp8(const at::Tensor& q,
                                                                                               const at::Tensor& k,
                                                                                               const at::Tensor& v);

// Position p of an fp8 V^T holds token fp8_key_order(tokens)[p]: inside each group of 32
// the order that lets the kernel feed P to the fp8 GEMM without moving data between
// threads (csrc/attention/probability_operand.cuh).
at::Tensor fp8_key_order(int64_t tokens, c10::Device device);

at::Tensor mean_pool(const at::Tensor& x, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                     int64_t region_w, int64_t text_len, bool text_first);

std::tuple<at::Tensor, at::Tensor> draft_select(const at::Tensor& q_pooled, const at::Tensor& k_pooled,
                                                c10::string_view rule, double sparsity, double top_p,
                                                int64_t text_blocks, bool text_first);

at::Tensor to_regions(const at::Tensor& x, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                      int64_t region_w, int64_t text_len, bool text_first);

at::Tensor from_regions(const at::Tensor& x, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                        int64_t region_w, int64_t text_len, bool text_first);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> to_regions_and_pool(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t frames, int64_t height, int64_t width,
    int64_t region_h, int64_t region_w, int64_t text_len, bool text_first);

// to_regions_and_pool followed by quantize_fp8 of its region-major q, k, v:
// (q_fp8, k_fp8, v_t_fp8, q_descale, k_descale, v_descale, q_pooled, k_pooled).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
to_regions_and_quantize_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t frames,
                            int64_t height, int64_t width, int64_t region_h, int64_t region_w, int64_t text_len,
                            bool text_first);

}  // namespace draftattn::reference
