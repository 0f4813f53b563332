// Shared pieces of the global rule's radix select on the order keys of a head's S*S
// probabilities (key bits 31..20 first, then 19..8 and 7..0).
//
// The first digit is counted by many CTAs per head during the softmax pass: each CTA
// histograms its entries in shared memory and adds the non-zero bins into the head's global
// histogram (the top-bit bins are few, so the adds are few); the last CTA of the head to
// arrive (atomic counter) picks the digit and leaves it in the head's state. The later
// digits are counted over the compacted candidates that match it (global_threshold.cu):
// their bins are many, and one global add per candidate would cost more than the data.
// Nothing waits on the host. The state must be zero before the first pass.
#pragma once
#include <cub/block/block_scan.cuh>

#include "draftattn/drafting.h"

namespace draftattn {

constexpr int kRadixThreads = 256;
constexpr int kDigitBins = 4096;
constexpr int kNoBin = -1;

struct DigitPass {
  int shift, bins;
  uint32_t fixed_mask;  // key bits fixed by the earlier passes
};

__host__ __device__ inline DigitPass digit_pass(int p) {
  return p == 0 ? DigitPass{20, 4096, 0u} : p == 1 ? DigitPass{8, 4096, 0xfff00000u} : DigitPass{0, 256, 0xffffff00u};
}

// Per-head state words (kDraftSelectStateWords in all), zeroed before the first pass.
struct HeadSelectState {
  uint32_t hist[kDigitBins];  // first digit, all CTAs of the softmax pass
  uint32_t prefix;            // key bits fixed so far
  uint32_t remaining;         // rank of the wanted entry among the entries matching `prefix`
  uint32_t equal_total;       // entries matching `prefix`
  uint32_t arrived;           // CTAs of the softmax pass done
  uint32_t candidates;        // entries compacted so far (global_threshold.cu)
};
static_assert(sizeof(HeadSelectState) == kDraftSelectStateWords * sizeof(uint32_t), "state size");

// Adds one key to the shared histogram; all 32 lanes call it together. Lanes with the same
// bin merge into one shared-memory atomic (most entries share a few top-bit bins); a warp
// with no matching key skips the match (passes 2 and 3 count few entries).
__device__ inline void count_key(uint32_t* hist, bool valid, uint32_t key, uint32_t prefix, const DigitPass& pass) {
  const bool match = valid && (key & pass.fixed_mask) == prefix;
  if (!__any_sync(0xffffffffu, match)) return;
  const int bin = match ? int((key >> pass.shift) & uint32_t(pass.bins - 1)) : kNoBin;
  const unsigned same = __match_any_sync(0xffffffffu, bin);
  if (bin != kNoBin && (threadIdx.x % 32) == __ffs(same) - 1) atomicAdd(&hist[bin], __popc(same));
}

__device__ inline void clear_histogram(uint32_t* hist, int bins) {
  for (int b = threadIdx.x; b < bins; b += kRadixThreads) hist[b] = 0;
}

// Adds this CTA's histogram into the head's and reports whether this CTA arrived last, in
// which case every other CTA's bins are visible to it. Called by all threads.
__device__ inline bool flush_and_arrive(const uint32_t* hist, HeadSelectState* st, unsigned ctas_per_head) {
  __shared__ bool last;
  __syncthreads();
  for (int b = threadIdx.x; b < kDigitBins; b += kRadixThreads)
    if (hist[b] != 0) atomicAdd(&st->hist[b], hist[b]);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&st->arrived, 1u) == ctas_per_head - 1;
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// The bin holding the `want`-th largest entry (1-based) of a histogram, counted from the
// top, found by kThreads threads together; returns (bin, rank inside it, its count) to all.
// Thread t owns `per` bins from the top down, so an exclusive scan gives the entries above.
struct Digit {
  uint32_t bin, rank, count;
};

template <int kThreads, typename LoadBin>
__device__ inline Digit pick_digit(int bins, uint32_t want, LoadBin load_bin) {
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ Digit found;
  const int per = bins >= kThreads ? bins / kThreads : 1;
  const bool owner = int(threadIdx.x) * per < bins;
  const int top = bins - per * int(threadIdx.x) - 1;
  uint32_t mine = 0;
  if (owner)
    for (int b = 0; b < per; ++b) mine += load_bin(top - b);
  uint32_t above;
  Scan(scan).ExclusiveSum(mine, above);
  if (owner && above < want && want <= above + mine) {
    for (int b = 0; b < per; ++b) {
      const uint32_t count = load_bin(top - b);
      if (above + count >= want) {
        found = Digit{uint32_t(top - b), want - above, count};
        break;
      }
      above += count;
    }
  }
  __syncthreads();
  return found;
}

}  // namespace draftattn
