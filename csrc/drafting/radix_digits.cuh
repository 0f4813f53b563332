// Shared pieces of the global rule's radix select on the order keys of a head's S*S
// probabilities: digit 0 = key bits 31..20, digit 1 = bits 19..8, digit 2 = bits 7..0.
//
// Each digit is counted by many CTAs per head, each over its own slice of the map: a CTA
// histograms the keys that match the digits found so far in shared memory and adds its
// non-zero bins into the head's global histogram; the last CTA of the head to arrive (atomic
// counter, after a fence) sees every bin, picks the digit and leaves it in the head's state
// for the next pass. Digit 0 is counted inside the softmax pass, digits 1 and 2 by
// global_threshold.cu. Nothing waits on the host. The state is zeroed by the logits kernel.
#pragma once
#include <cub/block/block_scan.cuh>

#include "draft_steps.h"

namespace draftattn {

constexpr int kRadixThreads = 256;
constexpr int kDigitBins = 4096;
constexpr int kDigits = 3;
constexpr int kNoBin = -1;

struct DigitPass {
  int shift, bins;
  uint32_t fixed_mask;  // key bits fixed by the earlier digits
  int hist_offset;      // where this digit's bins start in HeadSelectState::hist
};

__host__ __device__ inline DigitPass digit_pass(int p) {
  return p == 0   ? DigitPass{20, 4096, 0u, 0}
         : p == 1 ? DigitPass{8, 4096, 0xfff00000u, 4096}
                  : DigitPass{0, 256, 0xffffff00u, 8192};
}
constexpr int kHistogramWords = 4096 + 4096 + 256;

// What a digit pass found: the key bits fixed so far, the rank (1-based, from the top) of
// the wanted entry among the entries matching them, and how many entries match them. After
// the last digit, prefix is the key t of the keep-th largest entry and remaining is how many
// of the equal_total entries equal to t are kept (the first ones in flat order).
struct DigitResult {
  uint32_t prefix, remaining, equal_total;
};

// Per-head state, all zero before the softmax pass.
struct alignas(16) HeadSelectState {
  uint32_t hist[kHistogramWords];
  DigitResult found[kDigits];
  uint32_t arrived[kDigits + 1];  // CTAs done with each digit pass, then with the tie counts
};
static_assert(sizeof(HeadSelectState) % 16 == 0, "each head's state stays 16-byte aligned");
constexpr int kHeadSelectStateWords = int(sizeof(HeadSelectState) / sizeof(uint32_t));

// Adds one key to the shared histogram; all 32 lanes call it together. When many lanes
// match (the softmax pass counts every entry, most of them in a few top-bit bins), lanes
// with the same bin merge into one shared-memory atomic; when few match (the later digits
// count only the entries in the threshold's bin), each adds its own: match_any costs more
// than a handful of rarely conflicting atomics. A warp with no matching key does nothing.
constexpr int kMergeFromLanes = 8;

__device__ inline void count_key(uint32_t* hist, bool valid, uint32_t key, uint32_t prefix, const DigitPass& pass) {
  const bool match = valid && (key & pass.fixed_mask) == prefix;
  const unsigned matching = __ballot_sync(0xffffffffu, match);
  if (matching == 0) return;
  const int bin = match ? int((key >> pass.shift) & uint32_t(pass.bins - 1)) : kNoBin;
  if (__popc(matching) < kMergeFromLanes) {
    if (match) atomicAdd(&hist[bin], 1u);
    return;
  }
  const unsigned same = __match_any_sync(0xffffffffu, bin);
  if (bin != kNoBin && (threadIdx.x % 32) == __ffs(same) - 1) atomicAdd(&hist[bin], __popc(same));
}

__device__ inline void clear_histogram(uint32_t* hist, int bins) {
  for (int b = threadIdx.x; b < bins; b += kRadixThreads) hist[b] = 0;
}

// Whether this CTA is the last of `ctas` to pass the counter; if so, everything the others
// wrote to global memory before their call is visible to it. Called by all threads.
__device__ inline bool arrive_last(uint32_t* counter, unsigned ctas) {
  __shared__ bool last;
  __threadfence();  // this CTA's global writes / atomics are ordered before its arrival
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == ctas - 1;
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// Adds this CTA's histogram of `pass` into the head's and reports whether this CTA arrived
// last. Called by all threads.
__device__ inline bool flush_and_arrive(const uint32_t* hist, HeadSelectState* st, int pass_index,
                                        unsigned ctas_per_head) {
  const DigitPass pass = digit_pass(pass_index);
  __syncthreads();
  for (int b = threadIdx.x; b < pass.bins; b += kRadixThreads)
    if (hist[b] != 0) atomicAdd(&st->hist[pass.hist_offset + b], hist[b]);
  return arrive_last(&st->arrived[pass_index], ctas_per_head);
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

// The last CTA of a digit pass: picks the digit from the head's global histogram (read from
// L2: the other CTAs' atomics never passed through this SM's L1) and records it.
template <int kThreads>
__device__ inline void finish_digit(HeadSelectState* st, int pass_index, DigitResult before) {
  const DigitPass pass = digit_pass(pass_index);
  const uint32_t* hist = st->hist + pass.hist_offset;
  const Digit d = pick_digit<kThreads>(pass.bins, before.remaining, [&](int b) { return __ldcg(&hist[b]); });
  if (threadIdx.x == 0) st->found[pass_index] = DigitResult{before.prefix | (d.bin << pass.shift), d.rank, d.count};
}

}  // namespace draftattn
