// draft_select: logits -> row softmax -> per-row thresholds (global or per-row rule) ->
// block lists. Everything stays on the stream; kept counts are computed on the host from
// the arguments alone (no data), exactly as the reference rounds them.
#include <algorithm>
#include <cmath>

#include "draft_steps.h"

namespace draftattn {
namespace {

// floor(sparsity * n) in double, as the reference evaluates it.
int64_t dropped(double sparsity, int64_t n) { return int64_t(std::floor(sparsity * double(n))); }

}  // namespace

cudaError_t draft_select(const DraftSelectArgs& a, cudaStream_t stream) {
  const int S = a.num_regions;
  if (S < 1 || a.head_dim < 1 || (a.rule != SelectRule::kGlobal && S > kMaxRowSelectRegions) ||
      int64_t(S) * S > INT32_MAX)
    return cudaErrorInvalidValue;
  if (a.batch_heads == 0) return cudaSuccess;
  const int64_t head_stride = draft_scores_head_stride(S);

  cudaError_t err = launch_draft_logits(a, head_stride, stream);
  if (err == cudaSuccess) err = launch_row_softmax(a, head_stride, stream);
  if (err != cudaSuccess) return err;
  if (a.rule == SelectRule::kGlobal) {
    const int64_t entries = int64_t(S) * S;
    err = launch_global_threshold(a, head_stride, entries - dropped(a.sparsity, entries), stream);
  } else {
    const int row_keep = int(std::max<int64_t>(1, S - dropped(a.sparsity, S)));
    err = launch_row_threshold(a, head_stride, row_keep, stream);
  }
  if (err != cudaSuccess) return err;
  return launch_emit_block_lists(a, head_stride, stream);
}

}  // namespace draftattn
