// Per-row rules ("topk", "topp"): each row keeps its first n entries in the order "value
// descending, lower column first" (the reference's stable sort). One warp per row holds the
// row's order keys in registers and finds, without sorting, the key t of the n-th entry and
// how many entries equal to t are kept (the lowest columns among them, as the emit step
// reads it). The search fixes t one key bit at a time from the top: R is the set of entries
// matching the bits fixed so far, R1 / R0 its entries with the next bit 1 / 0; one ballot
// count (and for topp one mass sum) over R1 decides which half holds t. It stops early when
// R has one entry left.
//
// topk: t is in R1 when the rank still wanted is within |R1|.
// topp: the reference keeps sorted entry k when the mass before it is below top_p (the first
// entry always). With G(v) = mass of the entries above v, t is the smallest value with
// G(t) < top_p, so t is in R0 when R0 is not empty and (mass above R) + mass(R1) < top_p.
// Of the c entries equal to t, the j-th (from 0) is kept when G(t) + j*t < top_p.
// Masses are summed as integers in units of 2^-62 (every probability >= 2^-39 is exact
// there, smaller ones are truncated), so sums are exact and independent of the order; the
// reference's float64 running sum agrees whenever it is exact itself.
#include <cmath>

#include "draft_steps.h"
#include "float_key.cuh"

namespace draftattn {
namespace {

constexpr int kWarps = 4;
constexpr unsigned kFull = 0xffffffffu;

// The probability of an order key as an integer multiple of 2^-62, truncated: a float
// m * 2^(e-150) is m << (e - 88) there. Keys of negative values (key 0 in particular),
// zeros and subnormals give 0; so do values above 1, which a probability never has.
__device__ inline uint64_t fixed_mass(uint32_t key) {
  const uint32_t bits = key & 0x7fffffffu;
  const int e = int(bits >> 23);
  if ((key >> 31) == 0 || e == 0 || e > 127) return 0;
  const uint64_t m = (bits & 0x7fffffu) | 0x800000u;
  return e >= 88 ? m << (e - 88) : (88 - e < 24 ? m >> (88 - e) : 0);
}

// Warp sum of values below 2^63 (the masses of one row): three 21-bit pieces, each summed
// by one redux instruction without overflow.
__device__ inline uint64_t warp_sum(uint64_t x) {
  constexpr uint64_t kPiece = (uint64_t(1) << 21) - 1;
  const uint64_t lo = __reduce_add_sync(kFull, uint32_t(x & kPiece));
  const uint64_t mid = __reduce_add_sync(kFull, uint32_t((x >> 21) & kPiece));
  const uint64_t hi = __reduce_add_sync(kFull, uint32_t(x >> 42));
  return lo + (mid << 21) + (hi << 42);
}

// Lane l holds columns l, l + 32, ...; columns >= S hold key 0, which never matches a bit
// set to 1 and so never joins R1 (R's size is tracked from S down, padding excluded).
template <int kKeys, bool kTopP>
__global__ void __launch_bounds__(kWarps * 32)
    row_threshold_kernel(const float* scores, int64_t head_stride, int S, int64_t rows, uint32_t row_keep,
                         uint64_t mass_limit, uint32_t* row_key, int32_t* row_ties) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps only
  const int lane = threadIdx.x % 32;
  const float* x = scores + (row / S) * head_stride + (row % S) * S;
  const int used = (S + 31) / 32;  // key slots holding columns (the same in every lane)

  uint32_t key[kKeys];
#pragma unroll
  for (int c = 0; c < kKeys; ++c) {
    const int j = c * 32 + lane;
    key[c] = c < used && j < S ? order_key(x[j]) : 0u;
  }

  uint32_t prefix = 0;        // bits of t fixed so far (bits >= bit)
  uint32_t in_range = S;      // |R|
  uint32_t want = row_keep;   // topk: rank of t within R
  uint64_t mass_above = 0;    // topp: mass of the entries above R
  int bit = 31;
  for (; bit >= 0; --bit) {
    const uint32_t target = (prefix >> bit) | 1u;
    uint32_t ones = 0;
    uint64_t ones_mass = 0;
#pragma unroll
    for (int c = 0; c < kKeys; ++c) {
      if (c >= used) break;
      const bool match = (key[c] >> bit) == target;
      ones += match;
      if (kTopP) ones_mass += fixed_mass(match ? key[c] : 0u);  // not hoisted out of the bit loop
    }
    ones = __reduce_add_sync(kFull, ones);
    bool take_ones;
    if (kTopP) {
      ones_mass = warp_sum(ones_mass);
      take_ones = ones == in_range || mass_above + ones_mass >= mass_limit;
    } else {
      take_ones = want <= ones;
    }
    if (take_ones) {
      prefix |= 1u << bit;
      in_range = ones;
    } else {
      in_range -= ones;
      want -= ones;
      mass_above += ones_mass;
    }
    if (in_range == 1) break;  // warp-uniform: the counts are warp sums
  }

  uint32_t t = prefix;
  uint32_t kept = want;
  if (bit >= 0) {  // R = {t}: find it
    uint32_t mine = 0;
    bool here = false;
#pragma unroll
    for (int c = 0; c < kKeys; ++c) {
      if (c >= used) break;
      if (c * 32 + lane < S && (key[c] >> bit) == (prefix >> bit)) {
        mine = key[c];
        here = true;
      }
    }
    const unsigned holder = __ballot_sync(kFull, here);
    t = __shfl_sync(kFull, mine, __ffs(holder) - 1);
    kept = 1;
  } else if (kTopP) {  // R = the in_range entries equal to t, G(t) = mass_above < mass_limit
    const uint64_t step = fixed_mass(t);
    const uint64_t fit = step == 0 ? in_range : (mass_limit - mass_above - 1) / step + 1;
    kept = uint32_t(min(uint64_t(in_range), fit));
  }
  if (lane == 0) {
    row_key[row] = t;
    row_ties[row] = int32_t(kept);
  }
}

template <int kKeys>
cudaError_t launch_keys(const DraftSelectArgs& a, const DraftWorkspace& w, int row_keep, uint64_t mass_limit,
                        cudaStream_t stream) {
  const int64_t rows = int64_t(a.batch_heads) * a.num_regions;
  const unsigned ctas = unsigned((rows + kWarps - 1) / kWarps);
  if (a.rule == SelectRule::kTopP)
    row_threshold_kernel<kKeys, true><<<ctas, kWarps * 32, 0, stream>>>(
        w.scores, w.head_stride, a.num_regions, rows, uint32_t(row_keep), mass_limit, w.row_key, w.row_ties);
  else
    row_threshold_kernel<kKeys, false><<<ctas, kWarps * 32, 0, stream>>>(
        w.scores, w.head_stride, a.num_regions, rows, uint32_t(row_keep), mass_limit, w.row_key, w.row_ties);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_row_threshold(const DraftSelectArgs& a, const DraftWorkspace& w, int row_keep,
                                 cudaStream_t stream) {
  static_assert(kMaxRowSelectRegions == 128 * 32, "the largest instantiation covers kMaxRowSelectRegions");
  // G < top_p  <=>  G < ceil(top_p * 2^62) for an integer G; top_p * 2^62 is exact in double.
  const uint64_t mass_limit = uint64_t(std::ceil(a.top_p * 0x1p62));
  const int S = a.num_regions;
  if (S <= 8 * 32) return launch_keys<8>(a, w, row_keep, mass_limit, stream);
  if (S <= 32 * 32) return launch_keys<32>(a, w, row_keep, mass_limit, stream);
  if (S <= 64 * 32) return launch_keys<64>(a, w, row_keep, mass_limit, stream);
  if (S <= 128 * 32) return launch_keys<128>(a, w, row_keep, mass_limit, stream);
  return cudaErrorInvalidValue;
}

}  // namespace draftattn
