// draft_select: logits (+ row partials, + zeroed select state) -> row softmax (+ digit 0 of
// the radix select for "global") -> thresholds (global digits 1 and 2 and the tie split, or
// the per-row rules) -> block lists. Everything stays on the stream; kept counts come from
// the arguments alone (no data), rounded exactly as the reference rounds them. All scratch
// lives in the caller's one workspace buffer.
#include <algorithm>
#include <cmath>

#include "draft_steps.h"
#include "radix_digits.cuh"

namespace draftattn {
namespace {

constexpr size_t kWorkspaceAlign = 256;

size_t aligned(size_t bytes) { return (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign; }

// Byte sizes of the workspace parts, in carving order.
struct WorkspaceSizes {
  size_t scores, row_partials, states, row_key, row_ties;
  size_t total() const { return scores + row_partials + states + row_key + row_ties; }
};

WorkspaceSizes workspace_sizes(int batch_heads, int S, SelectRule rule) {
  const size_t heads = size_t(batch_heads), rows = heads * size_t(S);
  return {aligned(heads * size_t(draft_scores_head_stride(S)) * sizeof(float)),
          aligned(rows * size_t(draft_column_tiles(S)) * sizeof(float2)),
          rule == SelectRule::kGlobal ? aligned(heads * sizeof(HeadSelectState)) : 0,
          aligned(rows * sizeof(uint32_t)), aligned(rows * sizeof(int32_t))};
}

DraftWorkspace carve(const DraftSelectArgs& a) {
  const WorkspaceSizes sizes = workspace_sizes(a.batch_heads, a.num_regions, a.rule);
  char* p = static_cast<char*>(a.workspace);
  DraftWorkspace w{};
  w.scores = reinterpret_cast<float*>(p);
  p += sizes.scores;
  w.row_partials = reinterpret_cast<float2*>(p);
  p += sizes.row_partials;
  w.states = sizes.states > 0 ? reinterpret_cast<HeadSelectState*>(p) : nullptr;
  p += sizes.states;
  w.row_key = reinterpret_cast<uint32_t*>(p);
  p += sizes.row_key;
  w.row_ties = reinterpret_cast<int32_t*>(p);
  w.head_stride = draft_scores_head_stride(a.num_regions);
  return w;
}

// floor(sparsity * n) in double, as the reference evaluates it.
int64_t dropped(double sparsity, int64_t n) { return int64_t(std::floor(sparsity * double(n))); }

// "global": the radix select. keep == 0 (sparsity 1) keeps no entry: the emit step then
// reads per-row thresholds above every key (0xffffffff, no ties) and adds only the diagonal
// and text blocks.
cudaError_t global_rule(const DraftSelectArgs& a, const DraftWorkspace& w, cudaStream_t stream) {
  const int64_t entries = int64_t(a.num_regions) * a.num_regions;
  const int64_t keep = entries - dropped(a.sparsity, entries);
  cudaError_t err = launch_draft_logits(a, w, stream);
  if (err == cudaSuccess) err = launch_draft_softmax(a, w, keep, stream);
  if (err != cudaSuccess) return err;
  if (keep > 0) {
    err = launch_global_threshold(a, w, stream);
    return err == cudaSuccess ? launch_emit_block_lists(a, w, w.states, stream) : err;
  }
  const size_t rows = size_t(a.batch_heads) * a.num_regions;
  err = cudaMemsetAsync(w.row_key, 0xff, rows * sizeof(uint32_t), stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(w.row_ties, 0, rows * sizeof(int32_t), stream);
  return err == cudaSuccess ? launch_emit_block_lists(a, w, nullptr, stream) : err;
}

}  // namespace

size_t draft_select_workspace_bytes(int batch_heads, int num_regions, SelectRule rule) {
  return workspace_sizes(batch_heads, num_regions, rule).total();
}

cudaError_t draft_select(const DraftSelectArgs& a, cudaStream_t stream) {
  const int S = a.num_regions;
  if (S < 1 || a.head_dim < 1 || (a.rule != SelectRule::kGlobal && S > kMaxRowSelectRegions) ||
      int64_t(S) * S > INT32_MAX || reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0)
    return cudaErrorInvalidValue;
  if (a.batch_heads == 0) return cudaSuccess;
  const DraftWorkspace w = carve(a);
  if (a.rule == SelectRule::kGlobal) return global_rule(a, w, stream);

  const int row_keep = int(std::max<int64_t>(1, S - dropped(a.sparsity, S)));
  cudaError_t err = launch_draft_logits(a, w, stream);
  if (err == cudaSuccess) err = launch_draft_softmax(a, w, 0, stream);
  if (err == cudaSuccess) err = launch_row_threshold(a, w, row_keep, stream);
  return err == cudaSuccess ? launch_emit_block_lists(a, w, nullptr, stream) : err;
}

}  // namespace draftattn
