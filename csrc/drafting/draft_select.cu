// draft_select: logits (+ row partials) -> row softmax (+ first digit pass for "global") ->
// per-row thresholds (global or per-row rule) -> block lists. Everything stays on the
// stream; kept counts are computed on the host from the arguments alone (no data), exactly
// as the reference rounds them.
#include <algorithm>
#include <cmath>

#include "draft_steps.h"

namespace draftattn {
namespace {

// floor(sparsity * n) in double, as the reference evaluates it.
int64_t dropped(double sparsity, int64_t n) { return int64_t(std::floor(sparsity * double(n))); }

// "global": the radix select; keep == 0 (sparsity 1) keeps no entry, which the emit step
// reads from key 0xffffffff with no ties (it still adds the diagonal and text blocks).
cudaError_t global_rule(const DraftSelectArgs& a, int64_t head_stride, cudaStream_t stream) {
  const int64_t entries = int64_t(a.num_regions) * a.num_regions;
  const int64_t keep = entries - dropped(a.sparsity, entries);
  const size_t rows = size_t(a.batch_heads) * a.num_regions;
  cudaError_t err = cudaSuccess;
  if (keep > 0)
    err = cudaMemsetAsync(a.select_state, 0, size_t(a.batch_heads) * kDraftSelectStateWords * sizeof(uint32_t),
                          stream);
  if (err == cudaSuccess) err = launch_draft_logits(a, head_stride, stream);
  if (err == cudaSuccess) err = launch_draft_softmax(a, head_stride, keep, stream);
  if (err != cudaSuccess) return err;
  if (keep > 0) return launch_global_threshold(a, head_stride, stream);
  err = cudaMemsetAsync(a.row_key, 0xff, rows * sizeof(uint32_t), stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(a.row_ties, 0, rows * sizeof(int32_t), stream);
  return err;
}

}  // namespace

cudaError_t draft_select(const DraftSelectArgs& a, cudaStream_t stream) {
  const int S = a.num_regions;
  if (S < 1 || a.head_dim < 1 || (a.rule != SelectRule::kGlobal && S > kMaxRowSelectRegions) ||
      int64_t(S) * S > INT32_MAX)
    return cudaErrorInvalidValue;
  if (a.batch_heads == 0) return cudaSuccess;
  const int64_t head_stride = draft_scores_head_stride(S);

  cudaError_t err;
  if (a.rule == SelectRule::kGlobal) {
    err = global_rule(a, head_stride, stream);
  } else {
    const int row_keep = int(std::max<int64_t>(1, S - dropped(a.sparsity, S)));
    err = launch_draft_logits(a, head_stride, stream);
    if (err == cudaSuccess) err = launch_draft_softmax(a, head_stride, 0, stream);
    if (err == cudaSuccess) err = launch_row_threshold(a, head_stride, row_keep, stream);
  }
  if (err != cudaSuccess) return err;
  return launch_emit_block_lists(a, head_stride, stream);
}

}  // namespace draftattn
