// Argument validation shared by the reference ops (reference.cpp) and the CUDA ops
// (*_cuda.cpp). Every message names the argument and what is accepted (docs/CONTRACT.md).
// Metadata checks never read tensor data, so they cost no GPU sync; the value checks
// (check_block_list_values) read data and are only run on CPU tensors by the ops.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <string>

namespace draftattn::checks {

constexpr int64_t kBlockSize = 128;

// Geometry of the padded region-major layout (edges packed), derived from the layout op arguments.
struct VideoGeometry {
  int64_t frames, height, width, region_h, region_w, text_len;
  bool text_first;
  int64_t full_rows, full_cols;  // full regions per frame along rows / columns
  int64_t full_regions;          // frames * full_rows * full_cols
  int64_t edge_tokens;           // tokens of the partial edge regions, all frames
  int64_t num_regions;           // S: video blocks (full regions, then ceil(edge_tokens / 128))
  int64_t text_blocks;           // ceil(text_len / 128)
  int64_t num_blocks;            // S + text_blocks
  int64_t video_tokens;          // frames * height * width
  int64_t tokens;                // model-order length: video_tokens + text_len
  int64_t video_block_offset;    // index of the first video block
  int64_t text_block_offset;     // index of the first text block
};

inline VideoGeometry check_video_geometry(int64_t frames, int64_t height, int64_t width, int64_t region_h,
                                          int64_t region_w, int64_t text_len, bool text_first) {
  TORCH_CHECK(frames >= 1 && height >= 1 && width >= 1,
              "frames, height and width must be >= 1, got frames=", frames, " height=", height,
              " width=", width);
  TORCH_CHECK(region_h >= 1 && region_w >= 1 && region_h * region_w == kBlockSize,
              "region_h * region_w must equal the attention block size 128 (e.g. 8 x 16), got region_h=",
              region_h, " region_w=", region_w);
  TORCH_CHECK(text_len >= 0, "text_len must be >= 0, got ", text_len);
  VideoGeometry g{frames, height, width, region_h, region_w, text_len, text_first};
  g.full_rows = height / region_h;
  g.full_cols = width / region_w;
  g.full_regions = frames * g.full_rows * g.full_cols;
  g.edge_tokens = frames * (height * width - g.full_rows * g.full_cols * kBlockSize);
  g.num_regions = g.full_regions + (g.edge_tokens + kBlockSize - 1) / kBlockSize;
  g.text_blocks = (text_len + kBlockSize - 1) / kBlockSize;
  g.num_blocks = g.num_regions + g.text_blocks;
  g.video_tokens = frames * height * width;
  g.tokens = g.video_tokens + text_len;
  g.video_block_offset = text_first ? g.text_blocks : 0;
  g.text_block_offset = text_first ? 0 : g.num_regions;
  return g;
}

// A (batch, tokens, heads, head_dim) activation of a layout op with `expected_tokens` tokens.
inline void check_layout_activation(const at::Tensor& x, const char* name, int64_t expected_tokens,
                                    const char* token_order) {
  TORCH_CHECK(x.dim() == 4, name, " must be 4-D (batch, tokens, heads, head_dim), got ", x.dim(), "-D");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat, name,
              " must be float16, bfloat16 or float32, got ", dtype);
  TORCH_CHECK(x.size(1) == expected_tokens, name, " has ", x.size(1), " tokens but the layout needs ",
              expected_tokens, " (", token_order, ")");
}

inline void check_same_device_and_dtype(const at::Tensor& ref, const char* ref_name, const at::Tensor& other,
                                        const char* other_name) {
  TORCH_CHECK(other.device() == ref.device(), other_name, " must be on the same device as ", ref_name,
              " (", ref.device(), "), got ", other.device());
  TORCH_CHECK(other.scalar_type() == ref.scalar_type(), other_name, " must have the same dtype as ",
              ref_name, " (", ref.scalar_type(), "), got ", other.scalar_type());
}

// Arguments of to_regions_and_pool: q, k, v of one shape and dtype in model order.
inline VideoGeometry check_to_regions_and_pool_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                      int64_t frames, int64_t height, int64_t width,
                                                      int64_t region_h, int64_t region_w, int64_t text_len,
                                                      bool text_first) {
  const auto g = check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  const char* order = "model order: frames*height*width + text_len";
  check_layout_activation(q, "q", g.tokens, order);
  check_layout_activation(k, "k", g.tokens, order);
  check_layout_activation(v, "v", g.tokens, order);
  check_same_device_and_dtype(q, "q", k, "k");
  check_same_device_and_dtype(q, "q", v, "v");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "k and v must have the shape of q ", q.sizes(),
              ", got ", k.sizes(), " and ", v.sizes());
  return g;
}

inline void check_int32_on(const at::Tensor& t, const char* name, const at::Tensor& q) {
  TORCH_CHECK(t.scalar_type() == at::kInt, name, " must be int32, got ", t.scalar_type());
  TORCH_CHECK(t.device() == q.device(), name, " must be on the same device as q (", q.device(), "), got ",
              t.device());
}

// Shapes and types of the block lists of a sparse_attn call (no data reads).
inline void check_block_lists(const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                              const std::optional<at::Tensor>& block_lens, const at::Tensor& q, int64_t batch,
                              int64_t heads, int64_t num_blocks) {
  check_int32_on(kv_indices, "kv_indices", q);
  TORCH_CHECK(kv_indices.dim() == 4 && kv_indices.size(0) == batch && kv_indices.size(1) == heads &&
                  kv_indices.size(2) == num_blocks,
              "kv_indices must have shape (batch, heads, num_blocks, max_blocks) = (", batch, ", ", heads, ", ",
              num_blocks, ", max_blocks), got ", kv_indices.sizes());
  check_int32_on(kv_counts, "kv_counts", q);
  TORCH_CHECK(kv_counts.dim() == 3 && kv_counts.size(0) == batch && kv_counts.size(1) == heads &&
                  kv_counts.size(2) == num_blocks,
              "kv_counts must have shape (batch, heads, num_blocks) = (", batch, ", ", heads, ", ", num_blocks,
              "), got ", kv_counts.sizes());
  if (block_lens.has_value()) {
    check_int32_on(*block_lens, "block_lens", q);
    const bool per_batch = block_lens->dim() == 2 && block_lens->size(0) == batch;
    TORCH_CHECK((block_lens->dim() == 1 || per_batch) && block_lens->size(-1) == num_blocks,
                "block_lens must have shape (num_blocks,) = (", num_blocks, ",) or (batch, num_blocks) = (", batch,
                ", ", num_blocks, "), got ", block_lens->sizes());
  }
}

// Metadata checks of sparse_attn (no data reads). Returns num_blocks = ceil(tokens / 128).
inline int64_t check_sparse_attn_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                        const std::optional<at::Tensor>& block_lens,
                                        std::optional<double> scale) {
  TORCH_CHECK(q.dim() == 4, "q must be 4-D (batch, tokens, heads, head_dim), got ", q.dim(), "-D");
  TORCH_CHECK(q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16,
              "q must be float16 or bfloat16, got ", q.scalar_type());
  check_same_device_and_dtype(q, "q", k, "k");
  check_same_device_and_dtype(q, "q", v, "v");
  TORCH_CHECK(k.sizes() == q.sizes(), "k must have the shape of q ", q.sizes(), ", got ", k.sizes());
  TORCH_CHECK(v.sizes() == q.sizes(), "v must have the shape of q ", q.sizes(), ", got ", v.sizes());
  TORCH_CHECK(q.size(3) == 64 || q.size(3) == 128, "head_dim (last dim of q, k, v) must be 64 or 128, got ",
              q.size(3));
  TORCH_CHECK(q.size(1) >= 1, "q must have at least one token");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1,
              "q, k and v must be contiguous in the last dim (head_dim stride 1), got strides ", q.stride(3),
              ", ", k.stride(3), ", ", v.stride(3));
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2);
  const int64_t num_blocks = (tokens + kBlockSize - 1) / kBlockSize;

  check_block_lists(kv_indices, kv_counts, block_lens, q, batch, heads, num_blocks);
  if (scale.has_value()) {
    TORCH_CHECK(std::isfinite(*scale) && *scale > 0, "scale must be a finite positive number, got ", *scale);
  }
  return num_blocks;
}

// Metadata checks of sparse_attn_fp8 (no data reads). Returns num_blocks.
inline int64_t check_sparse_attn_fp8_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v_t,
                                            const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                            const at::Tensor& q_descale, const at::Tensor& k_descale,
                                            const at::Tensor& v_descale, const std::optional<at::Tensor>& block_lens,
                                            std::optional<double> scale) {
  TORCH_CHECK(q.dim() == 4, "q must be 4-D (batch, tokens, heads, head_dim), got ", q.dim(), "-D");
  TORCH_CHECK(q.scalar_type() == at::kFloat8_e4m3fn, "q must be float8_e4m3fn, got ", q.scalar_type());
  check_same_device_and_dtype(q, "q", k, "k");
  check_same_device_and_dtype(q, "q", v_t, "v_t");
  TORCH_CHECK(k.sizes() == q.sizes(), "k must have the shape of q ", q.sizes(), ", got ", k.sizes());
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  TORCH_CHECK(head_dim == 64 || head_dim == 128, "head_dim (last dim of q, k) must be 64 or 128, got ", head_dim);
  TORCH_CHECK(tokens >= 1, "q must have at least one token");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1, "q and k must be contiguous in the last dim (head_dim)");
  const int64_t num_blocks = (tokens + kBlockSize - 1) / kBlockSize;
  TORCH_CHECK(v_t.dim() == 4 && v_t.size(0) == batch && v_t.size(1) == heads && v_t.size(2) == head_dim &&
                  v_t.size(3) == num_blocks * kBlockSize,
              "v_t must have shape (batch, heads, head_dim, num_blocks*128) = (", batch, ", ", heads, ", ", head_dim,
              ", ", num_blocks * kBlockSize, ") in the fp8 key order (quantize_fp8 writes it), got ", v_t.sizes());
  TORCH_CHECK(v_t.stride(3) == 1, "v_t must be contiguous in its last (token) dim");
  const auto check_factors = [&](const at::Tensor& t, const char* name, at::IntArrayRef shape) {
    TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32, got ", t.scalar_type());
    TORCH_CHECK(t.device() == q.device(), name, " must be on the same device as q (", q.device(), "), got ",
                t.device());
    TORCH_CHECK(t.sizes() == shape && t.is_contiguous(), name, " must be a contiguous tensor of shape ", shape,
                ", got ", t.sizes());
  };
  check_factors(q_descale, "q_descale", {batch, heads, num_blocks});
  check_factors(k_descale, "k_descale", {batch, heads, num_blocks});
  check_factors(v_descale, "v_descale", {batch, heads});
  check_block_lists(kv_indices, kv_counts, block_lens, q, batch, heads, num_blocks);
  if (scale.has_value()) {
    TORCH_CHECK(std::isfinite(*scale) && *scale > 0, "scale must be a finite positive number, got ", *scale);
  }
  return num_blocks;
}

// Value checks of the block lists: counts in [0, max_blocks], listed indices strictly
// ascending in [0, num_blocks), block_lens in [0, 128] and the last block within `tokens`.
// Reads the data: the reference runs it on CPU tensors; for CUDA tensors call
// draftattn_cuda.validate_block_lists explicitly (it syncs).
inline void check_block_list_values(const at::Tensor& kv_indices, const at::Tensor& kv_counts,
                                    const std::optional<at::Tensor>& block_lens, int64_t tokens) {
  const int64_t num_blocks = kv_counts.size(2), max_blocks = kv_indices.size(3);
  TORCH_CHECK(((kv_counts >= 0) & (kv_counts <= max_blocks)).all().item<bool>(),
              "kv_counts entries must be in [0, max_blocks=", max_blocks, "]");
  const auto slot = at::arange(max_blocks, kv_indices.options()).view({1, 1, 1, max_blocks});
  const auto listed = slot < kv_counts.unsqueeze(-1);
  TORCH_CHECK((~listed | ((kv_indices >= 0) & (kv_indices < num_blocks))).all().item<bool>(),
              "kv_indices entries within kv_counts must be in [0, num_blocks=", num_blocks, ")");
  if (max_blocks > 1) {
    const auto rising = kv_indices.narrow(3, 1, max_blocks - 1) > kv_indices.narrow(3, 0, max_blocks - 1);
    TORCH_CHECK((~listed.narrow(3, 1, max_blocks - 1) | rising).all().item<bool>(),
                "kv_indices rows must be strictly ascending within kv_counts");
  }
  if (block_lens.has_value()) {
    TORCH_CHECK(((*block_lens >= 0) & (*block_lens <= kBlockSize)).all().item<bool>(),
                "block_lens entries must be in [0, 128]");
    const int64_t last_room = tokens - (num_blocks - 1) * kBlockSize;
    TORCH_CHECK((block_lens->select(-1, num_blocks - 1) <= last_room).all().item<bool>(),
                "block_lens of the last block must be at most ", last_room, " (what tokens=", tokens, " leaves)");
  }
}

// draft_select arguments. Returns S, the number of regions.
inline int64_t check_draft_select_inputs(const at::Tensor& q_pooled, const at::Tensor& k_pooled,
                                         c10::string_view rule, double sparsity, double top_p,
                                         int64_t text_blocks) {
  TORCH_CHECK(q_pooled.dim() == 4, "q_pooled must be 4-D (batch, heads, regions, head_dim), got ",
              q_pooled.dim(), "-D");
  TORCH_CHECK(q_pooled.scalar_type() == at::kFloat, "q_pooled must be float32, got ", q_pooled.scalar_type());
  check_same_device_and_dtype(q_pooled, "q_pooled", k_pooled, "k_pooled");
  TORCH_CHECK(k_pooled.sizes() == q_pooled.sizes(), "k_pooled must have the shape of q_pooled ",
              q_pooled.sizes(), ", got ", k_pooled.sizes());
  TORCH_CHECK(q_pooled.size(2) >= 1, "q_pooled must have at least one region");
  TORCH_CHECK(rule == "global" || rule == "topk" || rule == "topp",
              "rule must be 'global', 'topk' or 'topp', got '", std::string(rule), "'");
  TORCH_CHECK(sparsity >= 0.0 && sparsity <= 1.0, "sparsity must be in [0, 1], got ", sparsity);
  TORCH_CHECK(top_p > 0.0 && top_p <= 1.0, "top_p must be in (0, 1], got ", top_p);
  TORCH_CHECK(text_blocks >= 0, "text_blocks must be >= 0, got ", text_blocks);
  return q_pooled.size(2);
}

}  // namespace draftattn::checks
