// The launch steps of draft_select (draft_select.cu runs them in order on one stream).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "draftattn/drafting.h"

namespace draftattn {

// scores = (q_pooled k_pooled^T) * scale per head, fp32, plus the per-tile row partials.
cudaError_t launch_draft_logits(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream);

// In place: each row of scores becomes exp(x - rowmax) / rowsum. With keep > 0 ("global")
// it also runs the first digit pass of the radix select; select_state must be zero.
cudaError_t launch_draft_softmax(const DraftSelectArgs& a, int64_t head_stride, int64_t keep, cudaStream_t stream);

// "global", after launch_draft_softmax with keep > 0: the remaining digits, then per row the key of the keep-th largest entry and how many entries equal to it that row keeps
// (ties go to lower flat index).
cudaError_t launch_global_threshold(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream);

// "topk" / "topp": the same per-row (key, ties) pair from each row alone.
cudaError_t launch_row_threshold(const DraftSelectArgs& a, int64_t head_stride, int row_keep,
                                 cudaStream_t stream);

// kv_indices / kv_counts from the per-row (key, ties), plus the diagonal and text blocks.
cudaError_t launch_emit_block_lists(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream);

}  // namespace draftattn
