// Plain (torch-free) interface of the drafting kernels: region layout, pooling, draft map
// and block selection. Data formats follow docs/CONTRACT.md.
#pragma once
#include <cstdint>
#include <climits>
#include <cuda_runtime.h>

#include "draftattn/sparse_attn.h"  // DType, kBlockSize

namespace draftattn {

// How a model-order sequence maps onto padded region-major blocks (CONTRACT.md): every
// full region is a block; the tokens of the partial edge regions of all frames are packed
// into edge blocks after them; text blocks go before or after the video.
struct RegionLayout {
  int frames, height, width;
  int region_h, region_w;  // region_h * region_w == kBlockSize
  int text_len;
  bool text_first;

  int full_rows() const { return height / region_h; }
  int full_cols() const { return width / region_w; }
  int full_regions() const { return frames * full_rows() * full_cols(); }
  // Tokens of one frame outside its full regions.
  int edge_tokens_per_frame() const { return height * width - full_rows() * full_cols() * kBlockSize; }
  int edge_blocks() const {
    return int((int64_t(frames) * edge_tokens_per_frame() + kBlockSize - 1) / kBlockSize);
  }
  int num_regions() const { return full_regions() + edge_blocks(); }  // S: video blocks
  int text_blocks() const { return (text_len + kBlockSize - 1) / kBlockSize; }
  int num_blocks() const { return num_regions() + text_blocks(); }
  int64_t model_tokens() const { return int64_t(frames) * height * width + text_len; }
};

// A (batch, tokens, heads, head_dim) tensor with a unit last stride; strides in elements.
struct TokenTensor {
  const void* data;
  int64_t batch_stride, token_stride, head_stride;
};

// Up to three tensors go through one launch (q, k, v of to_regions_and_pool).
constexpr int kMaxGatherTensors = 3;

// Model order -> padded region-major copies and/or fp32 region means.
// For tensor t: dst[t] (nullable) receives the region-major copy, (batch, num_blocks*128,
// heads, head_dim) with strides dst_strides[t]; pooled[t] (nullable) receives the means,
// contiguous (batch, heads, num_regions, head_dim). Text tokens are copied, never pooled.
struct GatherRegionsArgs {
  TokenTensor src[kMaxGatherTensors];
  void* dst[kMaxGatherTensors];
  TokenTensor dst_strides[kMaxGatherTensors];  // .data unused
  float* pooled[kMaxGatherTensors];
  int num_tensors;
  int batch, heads, head_dim;
  DType dtype;
  RegionLayout layout;
};

// Padded region-major -> model order (padding rows dropped).
struct ScatterRegionsArgs {
  TokenTensor src;  // (batch, num_blocks*128, heads, head_dim)
  void* dst;
  TokenTensor dst_strides;  // (batch, model_tokens, heads, head_dim); .data unused
  int batch, heads, head_dim;
  DType dtype;
  RegionLayout layout;
};

// Whether the layout kernels handle this head_dim (others: use the reference).
bool regions_kernel_supports(int head_dim);

cudaError_t gather_regions(const GatherRegionsArgs& args, cudaStream_t stream);
cudaError_t scatter_regions(const ScatterRegionsArgs& args, cudaStream_t stream);

enum class SelectRule { kGlobal, kTopK, kTopP };

// Inputs and outputs of draft_select; all tensors contiguous.
struct DraftSelectArgs {
  const float* q_pooled;  // (batch*heads, S, head_dim)
  const float* k_pooled;  // (batch*heads, S, head_dim)
  void* workspace;        // draft_select_workspace_bytes(...) bytes, 16-byte aligned; any
                          // contents (draft_select initialises what it reads)
  int32_t* kv_indices;    // (batch*heads, nb, nb)
  int32_t* kv_counts;     // (batch*heads, nb)
  int batch_heads, num_regions, head_dim;
  SelectRule rule;
  double sparsity, top_p;
  int text_blocks;
  bool text_first;
};

// Scratch bytes draft_select needs: the S x S draft map per head (~4*S*S bytes) plus small
// per-row and per-head state.
size_t draft_select_workspace_bytes(int batch_heads, int num_regions, SelectRule rule);

// Largest S the per-row rules (topk, topp) take: one warp per row keeps the row's keys in
// registers.
constexpr int kMaxRowSelectRegions = 4096;

cudaError_t draft_select(const DraftSelectArgs& args, cudaStream_t stream);

// Inputs and outputs of quantize_fp8 (docs/CONTRACT.md); every output contiguous.
struct QuantizeFp8Args {
  TokenTensor q, k, v;     // (batch, tokens, heads, head_dim), fp16 or bf16
  uint8_t* q_fp8;          // e4m3 (batch, tokens, heads, head_dim)
  uint8_t* k_fp8;          // e4m3 (batch, tokens, heads, head_dim)
  uint8_t* v_t_fp8;        // e4m3 (batch, heads, head_dim, num_blocks*128), fp8 key order
  float* q_descale;        // (batch, heads, num_blocks)
  float* k_descale;        // (batch, heads, num_blocks)
  float* v_descale;        // (batch, heads)
  uint32_t* v_amax;        // workspace (batch*heads): |v| maxima as float bits
  int batch, tokens, heads, head_dim;
  DType dtype;
};

// Whether the quantisation kernels take these sizes (others: use the reference). Grid:
// (heads, num_blocks, batch x 3); y and z are limited to 65535. Empty inputs go to the
// reference too, which defines their results (and errors).
inline bool quantize_fp8_kernel_fits(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim) {
  const int64_t num_blocks = (tokens + kBlockSize - 1) / kBlockSize;
  return (head_dim == 64 || head_dim == 128) && batch > 0 && heads > 0 && tokens > 0 &&
         num_blocks <= 65535 && batch * 3 <= 65535;
}

// Bit-identical to reference::quantize_fp8; zeroes v_amax on the stream first.
cudaError_t quantize_fp8(const QuantizeFp8Args& args, cudaStream_t stream);

// The fused layout + pooling + e4m3 quantisation pass behind to_regions_and_quantize_fp8
// (docs/CONTRACT.md): bit-identical to quantize_fp8 applied to to_regions_and_pool's
// region-major q, k, v, with to_regions_and_pool's region means.
struct RegionsFp8Args {
  TokenTensor q, k, v;  // (batch, model_tokens, heads, head_dim) in model order, fp16 or bf16
  uint8_t* q_fp8;       // e4m3 (batch, num_blocks*128, heads, head_dim), padded region-major
  uint8_t* k_fp8;       // e4m3 (batch, num_blocks*128, heads, head_dim), padded region-major
  uint8_t* v_t_fp8;     // e4m3 (batch, heads, head_dim, num_blocks*128), fp8 key order
  float* q_descale;     // (batch, heads, num_blocks)
  float* k_descale;     // (batch, heads, num_blocks)
  float* v_descale;     // (batch, heads)
  float* q_pooled;      // (batch, heads, num_regions, head_dim)
  float* k_pooled;      // (batch, heads, num_regions, head_dim)
  uint32_t* v_amax;     // workspace (batch*heads): |v| maxima as float bits
  int batch, heads, head_dim;
  DType dtype;
  RegionLayout layout;
};

// Whether the fused kernels take these sizes (others: use the reference). Grid: (heads,
// num_blocks, batch x 3); y and z are limited to 65535; row offsets are 32-bit.
inline bool regions_fp8_kernel_fits(int64_t batch, int64_t heads, int64_t head_dim, int64_t model_tokens,
                                    int64_t num_blocks) {
  return (head_dim == 64 || head_dim == 128) && batch > 0 && heads > 0 && num_blocks <= 65535 &&
         batch * 3 <= 65535 && model_tokens < INT32_MAX && num_blocks * kBlockSize < INT32_MAX;
}

// Zeroes v_amax on the stream, then two launches (q, k tiles and v maxima; then V^T).
cudaError_t to_regions_quantize_fp8(const RegionsFp8Args& args, cudaStream_t stream);


}  // namespace draftattn
