// Do the tensor cores and the exponential unit (MUFU) of one SM work at the same time? Every
// CTA (one per SM) runs two warpgroups, each with a role: `gemm` issues fp8 64x192x128
// wgmma with both operands in shared memory (the S GEMM of the fp8 d=128 attention step),
// `gemm-rs` fp8 64x128x192 wgmma with A in registers (the PV GEMM), `exp` runs MUFU.EX2 over
// 32 independent registers per thread, `idle` exits. The roles alone and together, timed in
// one process: if the pipes overlap, gemm+exp takes about as long as the longer role alone;
// if they take turns, about as long as both added up.
// The `step` roles run the fp8 d=128 attention step's dependency chain with the kernel's own
// softmax (S = Q K^T, softmax, P to e4m3, O += P V) on K and V tiles that stay in shared
// memory: what a schedule reaches without loads, barriers or a producer. `step` and
// `step-pv-first` are the kernel's schedule until a967ebe (192-key steps; the previous PV GEMM
// waited after or before the softmax); `step-ahead` issues the next S GEMM before each
// softmax, as the kernel now does.
#include <cuda_runtime.h>

#include <cstdio>
#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/cutlass.h>
#include <cutlass/gemm/collective/builders/sm90_common.inl>
#include <string>

#include "attention/kernel_traits.cuh"
#include "attention/online_softmax.cuh"
#include "attention/probability_operand.cuh"
#include "attention/score_gemm.cuh"
#include "cli.h"
#include "common.h"
#include "timing.h"

namespace pipe_overlap {
using namespace cute;

const char* const kUsage = R"(usage: pipe_overlap_bench [flags]
  --gemm-iters N       fp8 GEMMs (64x192x128 or 64x128x192) per gemm warpgroup (4000)
  --exp-iters N        rounds of 32 exponentials per thread of an exp warpgroup (6000)
  --steps N            attention steps per step warpgroup, even (2000)
  --iters N            timed launches per case, median reported (9)
)";

enum Role : int { kIdle, kGemm, kGemmRS, kExp, kStep, kStepPvFirst, kStepAhead };

using Element = cutlass::float_e4m3_t;
template <class Rows, class Cols>
using KMajor = decltype(tile_to_shape(
    cutlass::gemm::collective::detail::ss_smem_selector<GMMA::Major::K, Element, Rows, Cols>(), Shape<Rows, Cols>{}));
using LayoutA = KMajor<_64, _128>;  // Q

// The two GEMMs of an attention step of kKeys keys at head dim 128, and where their K and V^T
// operands lie in shared memory.
template <int kKeys>
struct StepShape {
  using Keys = Int<kKeys>;
  using MmaQK = decltype(make_tiled_mma(GMMA::ss_op_selector<Element, Element, float, Shape<_64, Keys, _128>>()));
  using MmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, _128, Keys>, GMMA::Major::K, GMMA::Major::K>()));
  using LayoutK = KMajor<Keys, _128>;
  using LayoutVt = KMajor<_128, Keys>;
  using LayoutP = KMajor<_64, Keys>;  // only the shape of P, which the PV GEMM reads from registers
};
using Step192 = StepShape<192>;  // the earlier fp8 d=128 step; also the gemm roles' GEMMs
using Step128 = StepShape<128>;  // the S-ahead step (the kernel's now)

struct Smem {
  array_aligned<Element, cosize_v<LayoutA>, 1024> a;
  array_aligned<Element, cosize_v<Step192::LayoutK>, 1024> b;
  array_aligned<Element, cosize_v<Step192::LayoutVt>, 1024> vt;
  array_aligned<Element, cosize_v<Step128::LayoutK>, 1024> k128;
  array_aligned<Element, cosize_v<Step128::LayoutVt>, 1024> vt128;
};
// Dynamic shared memory per CTA: enough that a second CTA never fits on an SM.
constexpr int kSmemBytes = 160 * 1024;
static_assert(sizeof(Smem) + 1024 <= kSmemBytes);

// C += A B (O += P V in a step), one commit group.
template <class Mma, class AFragment, class BFragment, class Accumulator>
__device__ __forceinline__ void issue_accumulating(Mma& mma, AFragment& tA, const BFragment& tB, Accumulator& acc) {
  warpgroup_fence_operand(acc);
  warpgroup_arrive();
#pragma unroll
  for (int kb = 0; kb < size<2>(tA); ++kb) gemm(mma, tA(_, _, kb), tB(_, _, kb), acc);
  warpgroup_commit_batch();
}

template <class Mma, bool kRegistersA, class ALayout, class BLayout, class OutShape>
__device__ float run_gemms(Element* a_smem, Element* b_smem, int iters) {
  Tensor sA = make_tensor(make_smem_ptr(a_smem), ALayout{});
  Tensor sB = make_tensor(make_smem_ptr(b_smem), BLayout{});
  Mma mma;
  auto thr = mma.get_thread_slice(threadIdx.x % 128);
  Tensor tA = thr.partition_fragment_A(sA);  // descriptors, or registers (RS: sA gives the shape)
  Tensor tB = thr.partition_fragment_B(sB);
  if constexpr (kRegistersA) {
    for (int i = 0; i < size(tA); ++i) tA(i) = Element(0.5f + 0.03125f * float((threadIdx.x + i) % 13));
  }
  Tensor acc = partition_fragment_C(mma, OutShape{});
  clear(acc);
  for (int it = 0; it < iters; ++it) {
    issue_accumulating(mma, tA, tB, acc);
    warpgroup_wait<1>();  // one batch in flight while the next is issued
  }
  warpgroup_wait<0>();
  warpgroup_fence_operand(acc);
  float sum = 0.f;
  for (int i = 0; i < size(acc); ++i) sum += acc(i);
  return sum;
}

__device__ float run_exponentials(int iters) {
  float x[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) x[i] = 0.01f * float(threadIdx.x % 64 + i);
  for (int it = 0; it < iters; ++it) {
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      // x <- 2^-x stays in (0.5, 1): no infinities, and every step depends on the last.
      asm volatile("{\n .reg .f32 t;\n neg.f32 t, %0;\n ex2.approx.ftz.f32 %0, t;\n}" : "+f"(x[i]));
    }
  }
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) sum += x[i];
  return sum;
}

// Sets up one warpgroup's operands for steps of kKeys keys (Q, K and V^T over shared memory;
// O and P in registers, zeroed), hands them to `chain`, and returns a sum of O and of what
// `chain` returns (its softmax's row totals), which keeps all of the step's work alive.
template <int kKeys, class Chain>
__device__ __forceinline__ float run_chain(Element* q, Element* k, Element* vt, Chain&& chain) {
  using Shape_ = StepShape<kKeys>;
  typename Shape_::MmaQK mma_qk;
  typename Shape_::MmaPV mma_pv;
  const int thread = threadIdx.x % 128;
  auto thr_qk = mma_qk.get_thread_slice(thread);
  auto thr_pv = mma_pv.get_thread_slice(thread);
  Tensor tSrQ = thr_qk.partition_fragment_A(make_tensor(make_smem_ptr(q), LayoutA{}));
  Tensor tSrK = thr_qk.partition_fragment_B(make_tensor(make_smem_ptr(k), typename Shape_::LayoutK{}));
  Tensor tOrV = thr_pv.partition_fragment_B(make_tensor(make_smem_ptr(vt), typename Shape_::LayoutVt{}));
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<_64, _128>{});
  Tensor tOrP = make_tensor<Element>(draftattn::sm90::probability_operand_layout<true, kKeys>());
  clear(tOrO);
  for (int i = 0; i < size(tOrP); ++i) tOrP(i) = Element(0.f);
  float sum = chain(mma_qk, mma_pv, tSrQ, tSrK, tOrV, tOrO, tOrP);
  for (int i = 0; i < size(tOrO); ++i) sum += tOrO(i);
  return sum;
}

using draftattn::sm90::as_rows_cols;
using draftattn::sm90::issue_scores;
// Two rows a thread; the exponentials split between LinearExp2 and MUFU as in the fp8 d=128 kernel.
using Softmax = draftattn::sm90::OnlineSoftmax<
    2, true, draftattn::sm90::AttentionTraits<cutlass::float_e4m3_t, 128>::kLinearExp2Per16>;

// The kernel needs each row's probability total; a chain that drops it lets the compiler drop
// the 64 adds a step that make it (sessions 7-8 measured the chains without them).
__device__ __forceinline__ float row_totals(const Softmax& softmax) {
  float totals[2];
  softmax.totals(totals);
  return totals[0] + totals[1];
}

// One warpgroup's attention steps: S_j = Q K^T and O += P_{j-1} V issued together, the
// softmax of S_j, then P_j to e4m3. kPvFirst: the PV GEMM is waited for before the softmax;
// otherwise ptxas places that wait after the exponentials.
template <bool kPvFirst>
__device__ float run_steps(Smem& smem, int steps) {
  return run_chain<192>(smem.a.data(), smem.b.data(), smem.vt.data(),
                        [&](auto& mma_qk, auto& mma_pv, auto& tSrQ, auto& tSrK, auto& tOrV, auto& tOrO, auto& tOrP) {
    Tensor tSrS = partition_fragment_C(mma_qk, Shape<_64, _192>{});
    Tensor scores = make_tensor(tSrS.data(), as_rows_cols(tSrS.layout()));
    Tensor out_rc = make_tensor(tOrO.data(), as_rows_cols(tOrO.layout()));
    Softmax softmax(8.f);
    const float scale_log2[3] = {0.02f, 0.02f, 0.02f};
    float correction[2];
    for (int step = 0; step < steps; ++step) {
      issue_scores(mma_qk, tSrQ, tSrK, tSrS);
      issue_accumulating(mma_pv, tOrP, tOrV, tOrO);
      if constexpr (kPvFirst) {
        warpgroup_wait<0>();
      } else {
        warpgroup_wait<1>();
      }
      warpgroup_fence_operand(tSrS);
      softmax.template update<!kPvFirst>(scores, correction, scale_log2);
      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      Softmax::rescale(correction, out_rc);
      draftattn::sm90::to_probability_operand<true, 192>(tSrS, tOrP);
    }
    return row_totals(softmax);
  });
}

// S one step ahead, 128-key steps: step j issues O += P_{j-1} V and S_{j+1} = Q K^T, then
// runs the softmax of S_j (already in registers) under both, so a warpgroup keeps the
// tensor cores busy through its own softmax. Two S buffers, O and P: 208 registers.
__device__ float run_steps_ahead(Smem& smem, int steps) {
  return run_chain<128>(smem.a.data(), smem.k128.data(), smem.vt128.data(),
                        [&](auto& mma_qk, auto& mma_pv, auto& tSrQ, auto& tSrK, auto& tOrV, auto& tOrO, auto& tOrP) {
    Tensor s0 = partition_fragment_C(mma_qk, Shape<_64, _128>{});
    Tensor s1 = partition_fragment_C(mma_qk, Shape<_64, _128>{});
    Tensor out_rc = make_tensor(tOrO.data(), as_rows_cols(tOrO.layout()));
    Softmax softmax(8.f);
    const float scale_log2[1] = {0.02f};
    float correction[2];
    auto step = [&](auto& current, auto& next) {
      issue_accumulating(mma_pv, tOrP, tOrV, tOrO);
      issue_scores(mma_qk, tSrQ, tSrK, next);
      warpgroup_fence_operand(current);
      Tensor scores = make_tensor(current.data(), as_rows_cols(current.layout()));
      softmax.template update<false>(scores, correction, scale_log2);
      warpgroup_wait<1>();  // the PV GEMM; S_{j+1} may still run
      warpgroup_fence_operand(tOrO);
      Softmax::rescale(correction, out_rc);
      draftattn::sm90::to_probability_operand<true, 128>(current, tOrP);
      warpgroup_wait<0>();
      warpgroup_fence_operand(next);
    };
    issue_scores(mma_qk, tSrQ, tSrK, s0);
    warpgroup_wait<0>();
    for (int i = 0; i < steps / 2; ++i) {
      step(s0, s1);
      step(s1, s0);
    }
    return row_totals(softmax);
  });
}

__global__ void __launch_bounds__(256, 1) overlap_kernel(int role0, int role1, int gemm_iters, int exp_iters,
                                                         int steps, float* sink) {
  extern __shared__ __align__(1024) char smem_bytes[];
  auto& smem = *reinterpret_cast<Smem*>(smem_bytes);
  // Operands: small positive e4m3 values (not zeros, which would draw less power).
  uint8_t* raw = reinterpret_cast<uint8_t*>(&smem);
  for (int i = threadIdx.x; i < int(sizeof(Smem)); i += blockDim.x) raw[i] = uint8_t(0x20 + (i * 37) % 24);
  cutlass::arch::fence_view_async_shared();
  __syncthreads();

  const int role = threadIdx.x < 128 ? role0 : role1;
  float result = 0.f;
  if (role == kGemm) {
    result = run_gemms<Step192::MmaQK, false, LayoutA, Step192::LayoutK, Shape<_64, _192>>(smem.a.data(), smem.b.data(),
                                                                                      gemm_iters);
  }
  if (role == kGemmRS) {
    result = run_gemms<Step192::MmaPV, true, Step192::LayoutP, Step192::LayoutVt, Shape<_64, _128>>(
        smem.a.data(), smem.vt.data(), gemm_iters);
  }
  if (role == kExp) result = run_exponentials(exp_iters);
  if (role == kStep) result = run_steps<false>(smem, steps);
  if (role == kStepPvFirst) result = run_steps<true>(smem, steps);
  if (role == kStepAhead) result = run_steps_ahead(smem, steps);
  if (result == 12345.f) sink[blockIdx.x] = result;  // keeps the work; never true in practice
}

const char* role_name(int role) {
  constexpr const char* kNames[] = {"idle", "gemm", "gemm-rs", "exp", "step", "step-pv-first", "step-ahead"};
  return kNames[role];
}

}  // namespace pipe_overlap

int main(int argc, char** argv) {
  using namespace pipe_overlap;
  bench::Cli cli(argc, argv, kUsage);
  const int gemm_iters = int(cli.integer("gemm-iters", 4000));
  const int exp_iters = int(cli.integer("exp-iters", 6000));
  const int steps = int(cli.integer("steps", 2000));
  const int iters = int(cli.integer("iters", 9));
  cli.finish();
  if (steps <= 0 || steps % 2 != 0) {
    std::fprintf(stderr, "--steps must be a positive even number (step-ahead runs steps in pairs), got %d\n", steps);
    return 2;
  }

  int device = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  CUDA_CHECK(cudaFuncSetAttribute(overlap_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  float* sink = nullptr;
  CUDA_CHECK(cudaMalloc(&sink, sms * sizeof(float)));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));

  const double gemm_flop = 2.0 * 64 * 192 * 128 * gemm_iters * sms;
  const double exps = 128.0 * 32 * exp_iters * sms;
  // A step of a step role: two GEMMs (S and PV) of 64 x keys x 128, 64 x keys exponentials.
  auto step_keys = [](int role) { return role == kStepAhead ? 128 : role == kStep || role == kStepPvFirst ? 192 : 0; };
  std::printf("%s, %d SMs; gemm warpgroup: %d fp8 GEMMs; exp warpgroup: %d x 32 ex2 a thread\n", prop.name,
              sms, gemm_iters, exp_iters);
  std::printf("| warpgroup 0 | warpgroup 1 | ms | fp8 TFLOP/s | ex2 / ns |\n|---|---|---|---|---|\n");
  const int cases[][2] = {{kGemm, kIdle}, {kGemmRS, kIdle}, {kIdle, kExp}, {kGemm, kExp}, {kGemmRS, kExp},
                          {kGemm, kGemm}, {kGemmRS, kGemmRS}, {kExp, kExp}, {kStep, kIdle}, {kStep, kStep},
                          {kStepPvFirst, kStepPvFirst}, {kStepAhead, kIdle}, {kStepAhead, kStepAhead}};
  for (const auto& c : cases) {
    const float ms = bench::median_ms(stream, 2, iters, [&](int) {
      overlap_kernel<<<sms, 256, kSmemBytes, stream>>>(c[0], c[1], gemm_iters, exp_iters, steps, sink);
      return cudaGetLastError();
    });
    const int gemms = (c[0] == kGemm || c[0] == kGemmRS) + (c[1] == kGemm || c[1] == kGemmRS);
    const int exp_groups = (c[0] == kExp) + (c[1] == kExp);
    const double keys = step_keys(c[0]) + step_keys(c[1]);
    const double flop = gemms * gemm_flop + keys * 4.0 * 64 * 128 * steps * sms;
    const double ex2 = exp_groups * exps + keys * 64.0 * steps * sms;
    std::printf("| %s | %s | %.3f | %.0f | %.0f |\n", role_name(c[0]), role_name(c[1]), ms, flop / (ms * 1e9),
                ex2 / (ms * 1e6));
  }
  CUDA_CHECK(cudaFree(sink));
  return 0;
}
