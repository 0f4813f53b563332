// Plain (torch-free) interface of the drafting kernels: region layout, pooling, draft map
// and block selection. Data formats follow docs/CONTRACT.md.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "draftattn/sparse_attn.h"  // DType, kBlockSize

namespace draftattn {

// How a model-order sequence maps onto padded region-major blocks (CONTRACT.md).
struct RegionLayout {
  int frames, height, width;
  int region_h, region_w;  // region_h * region_w == kBlockSize
  int text_len;
  bool text_first;

  int regions_y() const { return (height + region_h - 1) / region_h; }
  int regions_x() const { return (width + region_w - 1) / region_w; }
  int num_regions() const { return frames * regions_y() * regions_x(); }
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

// Column tiles of the draft logits kernel: each keeps one (max, sum of exp) pair per row.
constexpr int kDraftLogitsTile = 128;
inline int draft_column_tiles(int num_regions) { return (num_regions + kDraftLogitsTile - 1) / kDraftLogitsTile; }

// Words of per-head state of the global rule's radix select (the first digit's 4096-bin
// histogram, the digits found so far and two counters); draft_select zeroes it on the stream.
constexpr int kDraftSelectStateWords = 4096 + 5;

// Inputs and outputs of draft_select; all tensors contiguous.
struct DraftSelectArgs {
  const float* q_pooled;  // (batch*heads, S, head_dim)
  const float* k_pooled;  // (batch*heads, S, head_dim)
  float* scores;          // workspace (batch*heads, draft_scores_head_stride(S)): the S x S
                          // logits, then the softmax A, row-major per head
  float* row_partials;    // workspace (batch*heads, S, draft_column_tiles(S), 2): per row and
                          // column tile, the max logit and the sum of exp(logit - max)
  uint32_t* select_state; // workspace (batch*heads, kDraftSelectStateWords), "global" only
  uint32_t* candidates;   // workspace (batch*heads, S*S), "global" only: keys matching the
                          // first radix digit
  uint32_t* row_key;      // workspace (batch*heads, S): per-row threshold key
  int32_t* row_ties;      // workspace (batch*heads, S): entries equal to the key kept per row
  int32_t* kv_indices;    // (batch*heads, nb, nb)
  int32_t* kv_counts;     // (batch*heads, nb)
  int batch_heads, num_regions, head_dim;
  SelectRule rule;
  double sparsity, top_p;
  int text_blocks;
  bool text_first;
};

// Floats per head in the scores workspace: S*S rounded up so every head starts 16-byte aligned.
inline int64_t draft_scores_head_stride(int num_regions) {
  return (int64_t(num_regions) * num_regions + 3) / 4 * 4;
}

// Largest S the per-row rules (topk, topp) sort in shared memory.
constexpr int kMaxRowSelectRegions = 16384;

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

}  // namespace draftattn
