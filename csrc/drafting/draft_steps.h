// The launch steps of draft_select (draft_select.cu runs them in order on one stream) and
// the scratch they share, carved from the caller's one workspace buffer.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "draftattn/drafting.h"

namespace draftattn {

// Column tiles of the draft logits kernel: each keeps one (max, sum of exp) pair per row.
constexpr int kDraftLogitsTile = 128;
inline int draft_column_tiles(int num_regions) { return (num_regions + kDraftLogitsTile - 1) / kDraftLogitsTile; }

// Floats per head of the scores map: S*S rounded up so every head starts 16-byte aligned.
inline int64_t draft_scores_head_stride(int num_regions) {
  return (int64_t(num_regions) * num_regions + 3) / 4 * 4;
}

struct HeadSelectState;  // radix_digits.cuh

struct DraftWorkspace {
  float* scores;            // (batch*heads, head_stride): the S x S logits, then the softmax A
  float2* row_partials;     // (batch*heads, S, draft_column_tiles(S)): per row and column tile,
                            // the max logit and the sum of exp(logit - max)
  HeadSelectState* states;  // (batch*heads), "global" only (nullptr otherwise)
  uint32_t* row_key;        // (batch*heads, S): per-row threshold key, per-row rules
  int32_t* row_ties;        // (batch*heads, S): entries equal to the key kept per row
  int64_t head_stride;
};

// scores = (q_pooled k_pooled^T) * scale per head, fp32, plus the per-tile row partials.
// For "global" it also zeroes the heads' select states.
cudaError_t launch_draft_logits(const DraftSelectArgs& a, const DraftWorkspace& w, cudaStream_t stream);

// In place: each row of scores becomes exp(x - rowmax) / rowsum. With keep > 0 ("global")
// it also counts the first digit of the radix select and picks it.
cudaError_t launch_draft_softmax(const DraftSelectArgs& a, const DraftWorkspace& w, int64_t keep,
                                 cudaStream_t stream);

// "global", after launch_draft_softmax with keep > 0: the remaining digits, which fix the key
// t of the keep-th largest entry and how many entries equal to t are kept; when that splits
// the entries equal to t, the per-row share of them (ties go to the lower flat index).
cudaError_t launch_global_threshold(const DraftSelectArgs& a, const DraftWorkspace& w, cudaStream_t stream);

// "topk" / "topp": per row, the threshold key and how many entries equal to it are kept.
cudaError_t launch_row_threshold(const DraftSelectArgs& a, const DraftWorkspace& w, int row_keep,
                                 cudaStream_t stream);

// kv_indices / kv_counts from the thresholds (per head from the select state when `states`
// is set, per row otherwise), plus the diagonal and text blocks.
cudaError_t launch_emit_block_lists(const DraftSelectArgs& a, const DraftWorkspace& w,
                                    const HeadSelectState* states, cudaStream_t stream);

}  // namespace draftattn
