// Reference implementations (see reference.h). Exactness over speed, but no host syncs on
// non-CPU tensors, so the CUDA fallbacks stay capturable.
#include "reference.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "checks.h"

namespace draftattn::reference {
namespace {

using checks::kBlockSize;
using checks::VideoGeometry;

// For every row of the padded region-major sequence, the model-order token it holds, or
// g.tokens for a padding row (an index one past the end, pointing at an appended zero row).
at::Tensor region_source_index(const VideoGeometry& g) {
  auto index = at::full({g.num_blocks * kBlockSize}, g.tokens, at::kLong);
  auto rows = index.accessor<int64_t, 1>();
  const int64_t video_start = g.text_first ? g.text_len : 0;
  const int64_t text_start = g.text_first ? 0 : g.video_tokens;
  for (int64_t t = 0; t < g.text_len; ++t) {
    rows[(g.text_block_offset + t / kBlockSize) * kBlockSize + t % kBlockSize] = text_start + t;
  }
  // Full regions one block each, then the partial regions' tokens packed into edge blocks.
  int64_t full_row = g.video_block_offset * kBlockSize;
  int64_t edge_row = (g.video_block_offset + g.full_regions) * kBlockSize;
  for (int64_t f = 0; f < g.frames; ++f) {
    for (int64_t ry = 0; ry * g.region_h < g.height; ++ry) {
      for (int64_t rx = 0; rx * g.region_w < g.width; ++rx) {
        const bool full = ry < g.full_rows && rx < g.full_cols;
        int64_t& row = full ? full_row : edge_row;
        const int64_t y_end = std::min(g.height, (ry + 1) * g.region_h);
        const int64_t x_end = std::min(g.width, (rx + 1) * g.region_w);
        for (int64_t y = ry * g.region_h; y < y_end; ++y) {
          for (int64_t x = rx * g.region_w; x < x_end; ++x) {
            rows[row++] = video_start + (f * g.height + y) * g.width + x;
          }
        }
      }
    }
  }
  return index;
}

// Valid tokens per block, as float for averaging.
at::Tensor block_lens_of(const at::Tensor& source_index, const VideoGeometry& g) {
  return (source_index < g.tokens).view({g.num_blocks, kBlockSize}).sum(1).to(at::kFloat);
}

at::Tensor gather_regions(const at::Tensor& x, const at::Tensor& source_index) {
  const auto zero_row = at::zeros({x.size(0), 1, x.size(2), x.size(3)}, x.options());
  return at::cat({x, zero_row}, 1).index_select(1, source_index.to(x.device()));
}

// Mean of each video block from padded region-major rows (padding rows are zero).
at::Tensor pool_regions(const at::Tensor& regions, const at::Tensor& source_index, const VideoGeometry& g) {
  const auto lens = block_lens_of(source_index, g).narrow(0, g.video_block_offset, g.num_regions);
  const auto sums = regions.view({regions.size(0), g.num_blocks, kBlockSize, regions.size(2), regions.size(3)})
                        .narrow(1, g.video_block_offset, g.num_regions)
                        .to(at::kFloat)
                        .sum(2);
  return (sums / lens.to(regions.device()).view({1, g.num_regions, 1, 1})).permute({0, 2, 1, 3}).contiguous();
}

// (batch, heads, num_blocks, num_blocks) bool: block j is listed for query block i. Entries
// outside the counts or out of range land in a spill column that is dropped.
at::Tensor listed_block_mask(const at::Tensor& kv_indices, const at::Tensor& kv_counts, int64_t num_blocks) {
  const int64_t max_blocks = kv_indices.size(3);
  const auto slot = at::arange(max_blocks, kv_indices.options().dtype(at::kLong)).view({1, 1, 1, max_blocks});
  const auto index = kv_indices.to(at::kLong);
  const auto usable = (slot < kv_counts.unsqueeze(-1)) & (index >= 0) & (index < num_blocks);
  const auto target = at::where(usable, index, num_blocks);
  auto mask = at::zeros({kv_indices.size(0), kv_indices.size(1), num_blocks, num_blocks + 1},
                        kv_indices.options().dtype(at::kBool));
  return mask.scatter_(3, target, true).narrow(3, 0, num_blocks);
}

// (batch, tokens) bool: token t of batch entry b is a real row (not padding) of its block.
at::Tensor valid_token_mask(const std::optional<at::Tensor>& block_lens, int64_t batch, int64_t tokens,
                            const at::Tensor& token_block) {
  if (!block_lens.has_value()) return at::ones({batch, tokens}, token_block.options().dtype(at::kBool));
  const auto offset = at::arange(tokens, token_block.options()).remainder(kBlockSize);
  const auto lens = block_lens->to(at::kLong).view({-1, block_lens->size(-1)}).expand({batch, -1});
  return offset < lens.index_select(1, token_block);
}

// Sorted kv block lists (ascending, -1 past the count) from a (batch, heads, nb, nb) mask.
std::tuple<at::Tensor, at::Tensor> mask_to_lists(const at::Tensor& mask) {
  const int64_t nb = mask.size(3);
  const auto column = at::arange(nb, mask.options().dtype(at::kLong)).expand(mask.sizes());
  const auto ascending = std::get<0>(at::where(mask, column, nb).sort(-1));
  const auto indices = at::where(ascending == nb, -1, ascending).to(at::kInt);
  return {indices, mask.sum(-1).to(at::kInt)};
}

// Keeps, per (batch, head), the first `keep` positions of `scores` along its last dim in the
// order "value descending, lower position first" (a stable descending sort).
at::Tensor keep_first_ranked(const at::Tensor& scores, int64_t keep) {
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true));
  auto kept = at::zeros(scores.sizes(), scores.options().dtype(at::kBool));
  return kept.scatter_(-1, order.narrow(-1, 0, keep), true);
}

// Per row: the shortest prefix (in ranked order) whose mass reaches top_p, at least one
// entry. The running mass is accumulated in float64 so near-ties at the cut are stable.
at::Tensor keep_top_p(const at::Tensor& probs, double top_p) {
  const auto sorted = probs.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true);
  const auto mass = std::get<0>(sorted).to(at::kDouble).cumsum(-1);
  const auto mass_before = mass - std::get<0>(sorted).to(at::kDouble);
  auto keep_sorted = mass_before < top_p;
  keep_sorted.select(-1, 0).fill_(true);
  auto kept = at::zeros(probs.sizes(), probs.options().dtype(at::kBool));
  return kept.scatter_(-1, std::get<1>(sorted), keep_sorted);
}

}  // namespace

namespace {

// fp32 attention over block lists: q, k, v (batch, tokens, heads, head_dim), any float type.
std::tuple<at::Tensor, at::Tensor> attention_over_lists(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                        const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                                        const std::optional<at::Tensor>& block_lens,
                                                        double softmax_scale) {
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  const int64_t num_blocks = kv_counts.size(2);
  const auto token_block = at::arange(tokens, q.options().dtype(at::kLong)).div(kBlockSize, "floor");
  // (batch * heads, tokens): the mask of each (batch, head) row of the bmm below.
  const auto token_valid =
      valid_token_mask(block_lens, batch, tokens, token_block).repeat_interleave(heads, 0);
  const auto block_mask = listed_block_mask(kv_indices, kv_counts, num_blocks).view({batch * heads, num_blocks, num_blocks});
  const auto as_heads = [&](const at::Tensor& t) {
    return t.to(at::kFloat).permute({0, 2, 1, 3}).reshape({batch * heads, tokens, head_dim});
  };
  const auto qf = as_heads(q), kf_t = as_heads(k).transpose(1, 2), vf = as_heads(v);
  auto out = at::empty({batch * heads, tokens, head_dim}, qf.options());
  auto lse = at::empty({batch * heads, tokens}, qf.options());

  // Dense masked attention in query chunks that keep the fp32 score tile near 256 MB.
  const int64_t budget_rows = (int64_t{64} << 20) / std::max<int64_t>(1, batch * heads * tokens);
  const int64_t chunk = std::max<int64_t>(1, budget_rows / kBlockSize) * kBlockSize;
  for (int64_t start = 0; start < tokens; start += chunk) {
    const int64_t rows = std::min(chunk, tokens - start);
    const auto row_block = token_block.narrow(0, start, rows);
    const auto allowed = block_mask.index_select(1, row_block).index_select(2, token_block) &
                         token_valid.unsqueeze(1) & token_valid.narrow(1, start, rows).unsqueeze(2);
    const auto scores = at::bmm(qf.narrow(1, start, rows), kf_t)
                            .mul_(softmax_scale)
                            .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
    const auto row_lse = scores.logsumexp(-1);
    const auto probs = (scores - row_lse.unsqueeze(-1)).exp_().masked_fill_(allowed.logical_not(), 0.0);
    out.narrow(1, start, rows).copy_(at::bmm(probs, vf));
    lse.narrow(1, start, rows).copy_(row_lse);
  }
  return {out.view({batch, heads, tokens, head_dim}).permute({0, 2, 1, 3}), lse.view({batch, heads, tokens})};
}

// Per-(batch, head, block) factors -> per-token factors shaped (batch, tokens, heads, 1).
at::Tensor per_token(const at::Tensor& block_factors, int64_t tokens) {
  return block_factors.permute({0, 2, 1}).repeat_interleave(kBlockSize, 1).narrow(1, 0, tokens).unsqueeze(-1);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> sparse_attn(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                               const std::optional<at::Tensor>& block_lens,
                                               std::optional<double> scale) {
  checks::check_sparse_attn_inputs(q, k, v, kv_indices, kv_counts, block_lens, scale);
  if (q.is_cpu()) checks::check_block_list_values(kv_indices, kv_counts, block_lens, q.size(1));
  const double softmax_scale = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  auto [out, lse] = attention_over_lists(q, k, v, kv_indices, kv_counts, block_lens, softmax_scale);
  return {out.to(q.scalar_type()).contiguous(), lse};
}

std::tuple<at::Tensor, at::Tensor> sparse_attn_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v_t,
                                                   const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                                   const at::Tensor& q_descale, const at::Tensor& k_descale,
                                                   const at::Tensor& v_descale,
                                                   const std::optional<at::Tensor>& block_lens,
                                                   std::optional<double> scale) {
  checks::check_sparse_attn_fp8_inputs(q, k, v_t, kv_indices, kv_counts, q_descale, k_descale, v_descale, block_lens,
                                       scale);
  const int64_t tokens = q.size(1);
  if (q.is_cpu()) checks::check_block_list_values(kv_indices, kv_counts, block_lens, tokens);
  const double softmax_scale = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const auto qf = q.to(at::kFloat) * per_token(q_descale, tokens);
  const auto kf = k.to(at::kFloat) * per_token(k_descale, tokens);
  // Undo the fp8 key order of V^T, then back to (batch, tokens, heads, head_dim).
  const auto stored_at = fp8_key_order(v_t.size(3), v_t.device()).argsort();
  const auto vf = v_t.to(at::kFloat).index_select(3, stored_at).permute({0, 3, 1, 2}).narrow(1, 0, tokens) *
                  v_descale.unsqueeze(1).unsqueeze(-1);
  auto [out, lse] = attention_over_lists(qf, kf, vf, kv_indices, kv_counts, block_lens, softmax_scale);
  return {out.to(at::kBFloat16).contiguous(), lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> quantize_fp8(const at::Tensor& q,
                                                                                               const at::Tensor& k,
                                                                                               const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 4, "q must be 4-D (batch, tokens, heads, head_dim), got ", q.dim(), "-D");
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat,
              "q must be float16, bfloat16 or float32, got ", dtype);
  checks::check_same_device_and_dtype(q, "q", k, "k");
  checks::check_same_device_and_dtype(q, "q", v, "v");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "k and v must have the shape of q ", q.sizes());
  TORCH_CHECK(q.size(3) == 64 || q.size(3) == 128, "head_dim must be 64 or 128, got ", q.size(3));
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  const int64_t num_blocks = (tokens + kBlockSize - 1) / kBlockSize, padded = num_blocks * kBlockSize;
  constexpr double kE4M3Max = 448.0;
  // Factor that maps |x| max to e4m3's largest value; all-zero groups keep factor 1.
  // Tensor / tensor: a true fp32 division on every device (CUDA's tensor / scalar multiplies
  // by the reciprocal, one ulp off), so CPU, ATen-on-GPU and the CUDA kernel agree bit for bit.
  const auto descale_of = [&](const at::Tensor& amax) {
    return at::where(amax > 0, amax / at::full_like(amax, kE4M3Max), 1.0);
  };
  const auto pad_tokens = [&](const at::Tensor& x) {
    return at::constant_pad_nd(x.to(at::kFloat), {0, 0, 0, 0, 0, padded - tokens});
  };
  // x / descale with x's sign, NaN included (inf / inf, in a group whose max is inf, gives a
  // NaN whose sign the platform picks: negative on x86, positive on CUDA), saturated at 448
  // (a group with a NaN keeps descale 1; older ATen turns magnitudes from 480 up into NaN).
  const auto quotient = [&](const at::Tensor& x, const at::Tensor& descale) {
    return at::copysign(x / descale, x).clamp(-kE4M3Max, kE4M3Max);
  };
  const auto per_block = [&](const at::Tensor& x) {
    const auto amax = pad_tokens(x).view({batch, num_blocks, kBlockSize, heads, head_dim}).abs().amax({2, 4});
    const auto descale = descale_of(amax).permute({0, 2, 1}).contiguous();  // (batch, heads, blocks)
    return std::make_tuple(quotient(x.to(at::kFloat), per_token(descale, tokens)).to(at::kFloat8_e4m3fn), descale);
  };
  auto [q8, q_descale] = per_block(q);
  auto [k8, k_descale] = per_block(k);
  const auto v_descale = descale_of(v.to(at::kFloat).abs().amax({1, 3})).contiguous();  // (batch, heads)
  const auto v_t = quotient(pad_tokens(v), v_descale.view({batch, 1, heads, 1}))
                       .permute({0, 2, 3, 1})
                       .index_select(3, fp8_key_order(padded, v.device()))
                       .to(at::kFloat8_e4m3fn)
                       .contiguous();
  return {q8, k8, v_t, q_descale, k_descale, v_descale};
}

at::Tensor fp8_key_order(int64_t tokens, c10::Device device) {
  TORCH_CHECK(tokens % 32 == 0, "the fp8 key order works on whole groups of 32 tokens, got ", tokens);
  const auto k = at::arange(tokens, at::TensorOptions().dtype(at::kLong).device(device));
  const auto in_half = k.remainder(16), in_quad = k.remainder(4);
  return k - in_half + in_half.div(4, "floor") * 2 + in_quad.remainder(2) + in_quad.div(2, "floor") * 8;
}

at::Tensor to_regions(const at::Tensor& x, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                      int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  checks::check_layout_activation(x, "x", g.tokens, "model order: frames*height*width + text_len");
  return gather_regions(x, region_source_index(g));
}

at::Tensor from_regions(const at::Tensor& x, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                        int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  checks::check_layout_activation(x, "x", g.num_blocks * kBlockSize, "padded region-major: num_blocks*128");
  const auto source = region_source_index(g);
  const auto row = at::arange(source.size(0), source.options());
  const auto is_real = source < g.tokens;
  auto row_of_token = at::empty({g.tokens}, source.options());
  row_of_token.index_copy_(0, source.masked_select(is_real), row.masked_select(is_real));
  return x.index_select(1, row_of_token.to(x.device()));
}

at::Tensor mean_pool(const at::Tensor& x, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                     int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  checks::check_layout_activation(x, "x", g.tokens, "model order: frames*height*width + text_len");
  const auto source = region_source_index(g);
  return pool_regions(gather_regions(x, source), source, g);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> to_regions_and_pool(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t frames, int64_t height, int64_t width,
    int64_t region_h, int64_t region_w, int64_t text_len, bool text_first) {
  const auto g =
      checks::check_to_regions_and_pool_inputs(q, k, v, frames, height, width, region_h, region_w, text_len, text_first);
  const auto source = region_source_index(g);
  auto q_regions = gather_regions(q, source);
  auto k_regions = gather_regions(k, source);
  auto q_pooled = pool_regions(q_regions, source, g);
  auto k_pooled = pool_regions(k_regions, source, g);
  return {q_regions, k_regions, gather_regions(v, source), q_pooled, k_pooled};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
to_regions_and_quantize_fp8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t frames,
                            int64_t height, int64_t width, int64_t region_h, int64_t region_w, int64_t text_len,
                            bool text_first) {
  checks::check_to_regions_and_pool_inputs(q, k, v, frames, height, width, region_h, region_w, text_len, text_first);
  TORCH_CHECK(q.size(3) == 64 || q.size(3) == 128,
              "head_dim (last dim of q, k, v) must be 64 or 128 for the fp8 kernel, got ", q.size(3));
  auto [q_regions, k_regions, v_regions, q_pooled, k_pooled] =
      to_regions_and_pool(q, k, v, frames, height, width, region_h, region_w, text_len, text_first);
  auto [q8, k8, v_t, q_descale, k_descale, v_descale] = quantize_fp8(q_regions, k_regions, v_regions);
  return {q8, k8, v_t, q_descale, k_descale, v_descale, q_pooled, k_pooled};
}

std::tuple<at::Tensor, at::Tensor> draft_select(const at::Tensor& q_pooled, const at::Tensor& k_pooled,
                                                c10::string_view rule, double sparsity, double top_p,
                                                int64_t text_blocks, bool text_first) {
  const int64_t regions = checks::check_draft_select_inputs(q_pooled, k_pooled, rule, sparsity, top_p, text_blocks);
  const int64_t batch = q_pooled.size(0), heads = q_pooled.size(1);
  const double draft_scale = 1.0 / std::sqrt(static_cast<double>(q_pooled.size(3)));
  const auto probs = at::matmul(q_pooled, k_pooled.transpose(-1, -2)).mul_(draft_scale).softmax(-1);

  // Dropped counts are floor(sparsity * n) with n an exact integer, evaluated in double.
  const auto dropped = [&](int64_t n) { return static_cast<int64_t>(std::floor(sparsity * static_cast<double>(n))); };
  at::Tensor kept;
  if (rule == "global") {
    const int64_t entries = regions * regions;
    kept = keep_first_ranked(probs.reshape({batch, heads, entries}), entries - dropped(entries))
               .view({batch, heads, regions, regions});
  } else if (rule == "topk") {
    kept = keep_first_ranked(probs, std::max<int64_t>(1, regions - dropped(regions)));
  } else {
    kept = keep_top_p(probs, top_p);
  }
  kept.diagonal(0, -2, -1).fill_(true);

  const int64_t nb = regions + text_blocks;
  const int64_t video_offset = text_first ? text_blocks : 0;
  const int64_t text_offset = text_first ? 0 : regions;
  auto mask = at::zeros({batch, heads, nb, nb}, kept.options());
  mask.narrow(2, video_offset, regions).narrow(3, video_offset, regions).copy_(kept);
  mask.narrow(2, text_offset, text_blocks).fill_(true);
  mask.narrow(3, text_offset, text_blocks).fill_(true);
  return mask_to_lists(mask);
}

namespace {
void register_reference_kernels(torch::Library& m) {
  m.impl("sparse_attn", &sparse_attn);
  m.impl("sparse_attn_fp8", &sparse_attn_fp8);
  m.impl("quantize_fp8", &quantize_fp8);
  m.impl("mean_pool", &mean_pool);
  m.impl("draft_select", &draft_select);
  m.impl("to_regions", &to_regions);
  m.impl("from_regions", &from_regions);
  m.impl("to_regions_and_pool", &to_regions_and_pool);
  m.impl("to_regions_and_quantize_fp8", &to_regions_and_quantize_fp8);
}
}  // namespace

}  // namespace draftattn::reference

TORCH_LIBRARY_IMPL(draftattn, CPU, m) { draftattn::reference::register_reference_kernels(m); }

#ifndef DRAFTATTN_WITH_CUDA
// CPU-only build: the reference also serves CUDA tensors (there are no CUDA kernels).
TORCH_LIBRARY_IMPL(draftattn, CUDA, m) { draftattn::reference::register_reference_kernels(m); }
#endif
