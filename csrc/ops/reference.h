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

}  // namespace draftattn::reference
