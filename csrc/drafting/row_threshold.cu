// Per-row rules ("topk", "topp"): each row keeps its first n entries in the order "value
// descending, lower column first" (the reference's stable sort). One warp per row holds the
// row's order keys in registers and finds, without sorting, the key t of the n-th entry and
// how many entries equal to t are kept (the lowest columns among them, as the emit step
// reads it). The search fixes t one 8-bit digit at a time from the top: R is the set of
// entries matching the digits fixed so far; the warp histograms the next digit of R's keys
// (count and, for topp, mass per bin) in its own shared-memory bins and picks the bin that
// holds t. It stops early when R has one entry left (usually after two digits).
//
// topk: t's bin holds the rank still wanted, counted from the top of R.
// topp: the reference keeps sorted entry k when the mass before it is below top_p (the first
// entry always). With G(v) = mass of the entries above v, t is the smallest value with
// G(t) < top_p. Going down R's bins, G at the top of a bin is the mass above R plus the
// bins above it; t's bin is the first non-empty one whose mass takes that sum to top_p, or
// else the lowest non-empty one. Of the c entries equal to t, the j-th (from 0) is kept
// when G(t) + j*t < top_p.
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

constexpr int kDigitBits = 8;
constexpr int kBins = 1 << kDigitBits;
constexpr int kBinsPerLane = kBins / 32;

// Whether `key` matches `prefix` in the bits from `fixed` up (nothing is fixed at 32).
__device__ inline bool matches_above(uint32_t key, uint32_t prefix, int fixed) {
  return fixed >= 32 || (key >> fixed) == (prefix >> fixed);
}

// The bin of R holding t, with R's entries and mass above that bin.
struct BinPick {
  uint32_t bin, count, count_above;
  unsigned long long mass_above;
};

// Lane l owns bins kBins-1-8l down to kBins-8-8l, so lane order is bin order from the top:
// inclusive warp scans give what lies above each lane's bins, then the owning lane walks
// its own bins. Every lane returns the pick.
template <bool kTopP>
__device__ inline BinPick pick_bin(const uint32_t* count, const unsigned long long* mass, uint32_t want,
                                   unsigned long long mass_above, unsigned long long mass_limit, int lane) {
  const int top = kBins - 1 - lane * kBinsPerLane;
  uint32_t lane_count = 0;
  unsigned long long lane_mass = 0;
#pragma unroll
  for (int b = 0; b < kBinsPerLane; ++b) {
    lane_count += count[top - b];
    if (kTopP) lane_mass += mass[top - b];
  }
  uint32_t count_through = lane_count;
  unsigned long long mass_through = lane_mass;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const uint32_t c = __shfl_up_sync(kFull, count_through, o);
    const unsigned long long m = kTopP ? __shfl_up_sync(kFull, mass_through, o) : 0ull;
    if (lane >= o) {
      count_through += c;
      mass_through += m;
    }
  }
  uint32_t above = count_through - lane_count;
  unsigned long long g = mass_above + (mass_through - lane_mass);
  bool owner;
  if (kTopP) {
    const unsigned reaching = __ballot_sync(kFull, lane_count > 0 && g + lane_mass >= mass_limit);
    const unsigned nonempty = __ballot_sync(kFull, lane_count > 0);
    owner = lane == (reaching != 0 ? __ffs(reaching) - 1 : 31 - __clz(nonempty));
  } else {
    owner = above < want && want <= above + lane_count;
  }
  BinPick pick{0u, 0u, 0u, 0ull};
  if (owner) {  // the last non-empty bin walked is the pick (the lowest one if none reaches)
    for (int b = 0; b < kBinsPerLane; ++b) {
      const uint32_t c = count[top - b];
      if (c == 0) continue;
      const unsigned long long m = kTopP ? mass[top - b] : 0ull;
      pick = BinPick{uint32_t(top - b), c, above, g};
      if (kTopP ? g + m >= mass_limit : above + c >= want) break;
      above += c;
      g += m;
    }
  }
  const int from = __ffs(__ballot_sync(kFull, owner)) - 1;
  pick.bin = __shfl_sync(kFull, pick.bin, from);
  pick.count = __shfl_sync(kFull, pick.count, from);
  pick.count_above = __shfl_sync(kFull, pick.count_above, from);
  pick.mass_above = __shfl_sync(kFull, pick.mass_above, from);
  return pick;
}

template <bool kTopP>
__device__ inline void add_run(uint32_t* count, unsigned long long* mass, uint32_t bin, uint32_t n,
                               unsigned long long run_mass) {
  atomicAdd(&count[bin], n);
  if (kTopP) atomicAdd(&mass[bin], run_mass);
}

// Lane l holds columns l, l + 32, ...; only columns < S are counted.
template <int kKeys, bool kTopP>
__global__ void __launch_bounds__(kWarps * 32, 1)
    row_threshold_kernel(const float* scores, int64_t head_stride, int S, int64_t rows, uint32_t row_keep,
                         unsigned long long mass_limit, uint32_t* row_key, int32_t* row_ties) {
  __shared__ uint32_t bin_count[kWarps][kBins];
  __shared__ unsigned long long bin_mass[kTopP ? kWarps : 1][kBins];
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps only
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint32_t* count = bin_count[warp];
  unsigned long long* mass = bin_mass[kTopP ? warp : 0];
  const float* x = scores + (row / S) * head_stride + (row % S) * S;
  const int used = (S + 31) / 32;  // key slots holding columns (the same in every lane)

  uint32_t key[kKeys];
#pragma unroll
  for (int c = 0; c < kKeys; ++c) {
    const int j = c * 32 + lane;
    key[c] = c < used && j < S ? order_key(x[j]) : 0u;
  }

  uint32_t prefix = 0;                // digits of t fixed so far (bits >= fixed)
  uint32_t in_range = S;              // |R|
  uint32_t want = row_keep;           // topk: rank of t within R
  unsigned long long mass_above = 0;  // topp: mass of the entries above R
  int fixed = 32;
  while (fixed > 0 && in_range > 1) {  // warp-uniform: the counts are warp-wide
    const int shift = fixed - kDigitBits;
    __syncwarp();  // the previous digit's bins have been read
    for (int b = lane; b < kBins; b += 32) {
      count[b] = 0;
      if (kTopP) mass[b] = 0;
    }
    __syncwarp();
    // A lane adds runs of equal bins at once: flat rows (most keys in one bin) would
    // otherwise serialise 32 lanes on one shared-memory address for every key slot.
    uint32_t run_bin = 0, run_count = 0;
    unsigned long long run_mass = 0;
#pragma unroll
    for (int c = 0; c < kKeys; ++c) {
      if (c >= used) break;
      if (c * 32 + lane < S && matches_above(key[c], prefix, fixed)) {
        const uint32_t bin = (key[c] >> shift) & uint32_t(kBins - 1);
        if (run_count > 0 && bin != run_bin) {
          add_run<kTopP>(count, mass, run_bin, run_count, run_mass);
          run_count = 0;
          run_mass = 0;
        }
        run_bin = bin;
        ++run_count;
        if (kTopP) run_mass += fixed_mass(key[c]);
      }
    }
    if (run_count > 0) add_run<kTopP>(count, mass, run_bin, run_count, run_mass);
    __syncwarp();
    const BinPick pick = pick_bin<kTopP>(count, mass, want, mass_above, mass_limit, lane);
    prefix |= pick.bin << shift;
    in_range = pick.count;
    want -= pick.count_above;
    mass_above = pick.mass_above;
    fixed = shift;
  }

  uint32_t t = prefix;
  uint32_t kept = want;
  if (in_range == 1) {  // R = {t}: find it
    uint32_t mine = 0;
    bool here = false;
#pragma unroll
    for (int c = 0; c < kKeys; ++c) {
      if (c >= used) break;
      if (c * 32 + lane < S && matches_above(key[c], prefix, fixed)) {
        mine = key[c];
        here = true;
      }
    }
    const unsigned holder = __ballot_sync(kFull, here);
    t = __shfl_sync(kFull, mine, __ffs(holder) - 1);
    kept = 1;
  } else if (kTopP) {  // R = the in_range entries equal to t, G(t) = mass_above < mass_limit
    const unsigned long long step = fixed_mass(t);
    const unsigned long long fit = step == 0 ? in_range : (mass_limit - mass_above - 1) / step + 1;
    kept = uint32_t(min((unsigned long long)in_range, fit));
  }
  if (lane == 0) {
    row_key[row] = t;
    row_ties[row] = int32_t(kept);
  }
}

template <int kKeys>
cudaError_t launch_keys(const DraftSelectArgs& a, const DraftWorkspace& w, int row_keep, unsigned long long mass_limit,
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
  const unsigned long long mass_limit = (unsigned long long)(std::ceil(a.top_p * 0x1p62));
  const int S = a.num_regions;
  if (S <= 8 * 32) return launch_keys<8>(a, w, row_keep, mass_limit, stream);
  if (S <= 32 * 32) return launch_keys<32>(a, w, row_keep, mass_limit, stream);
  if (S <= 64 * 32) return launch_keys<64>(a, w, row_keep, mass_limit, stream);
  if (S <= 128 * 32) return launch_keys<128>(a, w, row_keep, mass_limit, stream);
  return cudaErrorInvalidValue;
}

}  // namespace draftattn
