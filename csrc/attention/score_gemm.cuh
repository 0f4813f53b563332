// S = Q K^T for one warpgroup, issued as one wgmma commit group: the attention kernel's
// consumers and pipe_overlap_bench's step chains issue it the same way.
#pragma once

#include <cute/tensor.hpp>

namespace draftattn::sm90 {
using namespace cute;

// `scores` receives S (the first k-block overwrites it); tSrQ and tSrK are the warpgroup's
// (values, 1, k-block) descriptor fragments of Q and of one step's K.
template <class Mma, class QFragment, class KFragment, class Scores>
__device__ __forceinline__ void issue_scores(Mma& mma, const QFragment& tSrQ, const KFragment& tSrK, Scores& scores) {
  mma.accumulate_ = GMMA::ScaleOut::Zero;
  warpgroup_fence_operand(scores);
  warpgroup_arrive();
#pragma unroll
  for (int kb = 0; kb < size<2>(tSrQ); ++kb) {
    gemm(mma, tSrQ(_, _, kb), tSrK(_, _, kb), scores);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
}

}  // namespace draftattn::sm90
