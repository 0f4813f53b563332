// Plain (torch-free) interface of the Hopper block-sparse attention kernels.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace draftattn {

enum class DType { kFloat16, kBFloat16, kFloat8E4M3 };

// All strides are in elements. Tensors follow docs/CONTRACT.md: q, k, out are
// (batch, tokens, heads, head_dim) with a unit last stride; v too for 16-bit inputs, while
// fp8 inputs bring V^T, (batch, heads, head_dim, tokens) with a unit token stride and the
// fp8 key order (docs/CONTRACT.md); kv_indices is (batch, heads, num_blocks, max_blocks);
// kv_counts is (batch, heads, num_blocks); lse is (batch, heads, tokens) contiguous.
// fp8 output is bf16. block_lens is (num_blocks,) or (batch, num_blocks): valid rows of each
// block, 0..128.
struct SparseAttnParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;
  int64_t q_batch_stride, q_token_stride, q_head_stride;
  int64_t k_batch_stride, k_token_stride, k_head_stride;
  int64_t v_batch_stride, v_token_stride, v_head_stride;
  int64_t v_dim_stride;  // fp8 V^T only: stride between head_dim rows
  int64_t o_batch_stride, o_token_stride, o_head_stride;

  const int32_t* kv_indices;
  const int32_t* kv_counts;
  const int32_t* block_lens;  // nullable: every block full up to `tokens`
  int64_t lens_batch_stride;  // 0: one block_lens row for every batch entry
  int64_t idx_batch_stride, idx_head_stride, idx_block_stride;
  int64_t cnt_batch_stride, cnt_head_stride;
  int max_blocks;

  // fp8 only, contiguous fp32: q, k dequantisation factors per (batch, head, block) and
  // v's per (batch, head).
  const float* q_descale;
  const float* k_descale;
  const float* v_descale;

  int batch, tokens, heads, head_dim;
  int num_blocks;
  float scale;  // softmax scale applied to q.k
  int num_sms;     // multiprocessors of the device: the persistent grid size
  int* workspace;  // sparse_attn_workspace_ints() int32 of device memory, any contents
};

constexpr int kBlockSize = 128;

// Scratch of one launch: the tile scheduler's counter and the longest-rows-first tile order.
// Launches on one stream may share it; concurrent launches need one each.
constexpr int64_t sparse_attn_workspace_ints(int batch, int heads, int num_blocks) {
  return 1 + int64_t(batch) * heads * num_blocks;
}

// Launches on `stream` (a tile-ordering kernel, then the attention kernel); returns the
// launch status. head_dim must be 64 or 128.
cudaError_t sparse_attn_sm90(const SparseAttnParams& params, DType dtype, cudaStream_t stream);

// Whether an instantiation for (dtype, head_dim) was compiled into this build.
bool sparse_attn_sm90_available(DType dtype, int head_dim);

}  // namespace draftattn
