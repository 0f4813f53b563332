// Writes the block lists sparse_attn reads: per (head, query block) the kept kv blocks in
// ascending order, -1 after the count. A video query row i keeps region j when its
// probability key is above the row's threshold key t, or equal to t and among the first
// row_ties[i] such entries (lowest columns first), or when j == i. For the global rule t is
// the head's and row_ties is only read when the head's equal entries are split (else all
// are kept); for the per-row rules both come per row. Text blocks are always
// listed, and text query rows list every block. One warp per query block walks the row in
// column order and compacts with ballots, so the output is sorted without a sort.
#include "draft_steps.h"
#include "float_key.cuh"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr int kWarps = 8;
constexpr int kChunksInFlight = 4;

__global__ void __launch_bounds__(kWarps * 32) emit_block_lists_kernel(const float* scores, int64_t head_stride,
                                                                       int S, int text_blocks, bool text_first,
                                                                       const uint32_t* row_key, const int32_t* row_ties,
                                                                       int32_t* kv_indices, int32_t* kv_counts,
                                                                       const HeadSelectState* states, int64_t rows) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const unsigned below = (1u << lane) - 1;
  const int nb = S + text_blocks;
  const int64_t head = row / nb;
  const int qblock = int(row % nb);
  int32_t* out = kv_indices + row * nb;

  const int video_offset = text_first ? text_blocks : 0;
  const int text_offset = text_first ? 0 : S;
  const int region = qblock - video_offset;
  if (region < 0 || region >= S) {  // text query: dense row
    for (int j = lane; j < nb; j += 32) out[j] = j;
    if (lane == 0) kv_counts[row] = nb;
    return;
  }

  int count = 0;
  if (text_first) {
    for (int j = lane; j < text_blocks; j += 32) out[j] = j;
    count = text_blocks;
  }
  const float* x = scores + head * head_stride + int64_t(region) * S;
  uint32_t t;
  int ties;
  if (states != nullptr) {
    const DigitResult found = states[head].found[kDigits - 1];
    t = found.prefix;
    ties = found.remaining == found.equal_total ? S : row_ties[head * S + region];
  } else {
    t = row_key[head * S + region];
    ties = row_ties[head * S + region];
  }
  int equal_seen = 0;
  for (int c0 = 0; c0 < S; c0 += 32 * kChunksInFlight) {
    uint32_t keys[kChunksInFlight];  // a warp's loads are issued together, then compacted in order
#pragma unroll
    for (int c = 0; c < kChunksInFlight; ++c) {
      const int j = c0 + 32 * c + lane;
      keys[c] = j < S ? order_key(x[j]) : 0u;
    }
#pragma unroll
    for (int c = 0; c < kChunksInFlight; ++c) {
      const int j = c0 + 32 * c + lane;
      const uint32_t key = keys[c];
      const bool equal = j < S && key == t;
      const unsigned equal_mask = __ballot_sync(0xffffffffu, equal);
      const bool kept =
          j < S && (key > t || (equal && equal_seen + __popc(equal_mask & below) < ties) || j == region);
      const unsigned kept_mask = __ballot_sync(0xffffffffu, kept);
      if (kept) out[count + __popc(kept_mask & below)] = video_offset + j;
      count += __popc(kept_mask);
      equal_seen += __popc(equal_mask);
    }
  }
  if (!text_first) {
    for (int j = lane; j < text_blocks; j += 32) out[count + j] = text_offset + j;
    count += text_blocks;
  }
  for (int j = count + lane; j < nb; j += 32) out[j] = -1;
  if (lane == 0) kv_counts[row] = count;
}

}  // namespace

cudaError_t launch_emit_block_lists(const DraftSelectArgs& a, const DraftWorkspace& w,
                                    const HeadSelectState* states, cudaStream_t stream) {
  const int64_t rows = int64_t(a.batch_heads) * (a.num_regions + a.text_blocks);
  const int64_t ctas = (rows + kWarps - 1) / kWarps;
  emit_block_lists_kernel<<<unsigned(ctas), kWarps * 32, 0, stream>>>(w.scores, w.head_stride, a.num_regions,
                                                                       a.text_blocks, a.text_first, w.row_key,
                                                                       w.row_ties, a.kv_indices, a.kv_counts, states,
                                                                       rows);
  return cudaGetLastError();
}

}  // namespace draftattn
