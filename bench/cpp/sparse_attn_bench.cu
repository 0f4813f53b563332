// Times the Hopper block-sparse attention kernel through its plain interface
// (include/draftattn/sparse_attn.h) on random inputs and random kv block lists: one line per
// density with the median time and the effective TFLOP/s (dense FLOPs x listed fraction).
// --verify first checks a poisoned-output run against an fp32 host reference.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "attn_reference.h"
#include "block_lists.h"
#include "cli.h"
#include "common.h"
#include "device_fill.h"
#include "draftattn/sparse_attn.h"
#include "timing.h"

namespace {

using draftattn::DType;

const char* const kUsage = R"(usage: sparse_attn_bench [flags]
  --batch N            batch size (1)
  --heads N            heads (40)
  --tokens N           sequence length, need not be a multiple of 128 (75600)
  --head-dim 64|128    (128)
  --dtype bf16|fp16|fp8  (bf16); fp8 (e4m3, V^T as the kernel reads it, bf16 out) is timed only
  --density LIST       comma list: fraction of kv blocks each query block lists (1,0.5,0.25,0.1)
  --rows uniform|uneven  uniform: one count for every row; uneven: counts spread over 0..2x (uniform)
  --partial            random partial block_lens (default: every block full up to --tokens)
  --scale X            softmax scale (1/sqrt(head-dim))
  --iters N            timed launches, median reported (10)
  --warmup N           untimed launches first (3)
  --verify             check a poisoned-output run against an fp32 host reference; exit 1 on FAIL
  --verify-blocks N    query blocks checked per (batch, head) (4)
  --seed N             inputs, lists and lengths (0)
)";

struct Config {
  int batch, heads, tokens, head_dim;
  DType dtype;
  std::vector<double> densities;
  bench::RowSpread spread;
  bool partial;
  float scale;
  int iters, warmup;
  bool verify;
  int verify_blocks;
  uint64_t seed;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

Config parse(int argc, char** argv) {
  bench::Cli cli(argc, argv, kUsage);
  Config c{};
  c.batch = int(cli.integer("batch", 1));
  c.heads = int(cli.integer("heads", 40));
  c.tokens = int(cli.integer("tokens", 75600));
  c.head_dim = int(cli.integer("head-dim", 128));
  const std::string dtype = cli.text("dtype", "bf16");
  c.densities = cli.reals("density", "1,0.5,0.25,0.1");
  const std::string rows = cli.text("rows", "uniform");
  c.partial = cli.has("partial");
  c.scale = float(cli.real("scale", 1.0 / std::sqrt(double(c.head_dim))));
  c.iters = int(cli.integer("iters", 10));
  c.warmup = int(cli.integer("warmup", 3));
  c.verify = cli.has("verify");
  c.verify_blocks = int(cli.integer("verify-blocks", 4));
  c.seed = uint64_t(cli.integer("seed", 0));
  cli.finish();

  if (c.batch < 1 || c.heads < 1 || c.tokens < 1) usage_error("--batch, --heads and --tokens must be >= 1");
  if (c.head_dim != 64 && c.head_dim != 128) usage_error("--head-dim must be 64 or 128");
  if (!bench::parse_dtype(dtype, &c.dtype)) usage_error("--dtype must be bf16, fp16 or fp8");
  if (c.verify && c.dtype == DType::kFloat8E4M3)
    usage_error("--verify covers bf16 and fp16; fp8 accuracy is tested by tests/test_fp8.py");
  if (rows == "uniform") c.spread = bench::RowSpread::kUniform;
  else if (rows == "uneven") c.spread = bench::RowSpread::kUneven;
  else usage_error("--rows must be uniform or uneven");
  for (double d : c.densities)
    if (!(d >= 0 && d <= 1)) usage_error("--density values must lie in [0, 1]");
  if (c.iters < 1 || c.warmup < 0 || c.verify_blocks < 1) usage_error("--iters, --verify-blocks >= 1, --warmup >= 0");
  return c;
}

// bf16 keeps 8 significant bits and fp16 11: P and the output are rounded to the input dtype,
// so the bound scales with the dtype's unit roundoff. lse is accumulated in fp32 either way.
struct Tolerance {
  double max_abs, rel_l2, lse;
};
Tolerance tolerance(DType dtype) {
  return dtype == DType::kBFloat16 ? Tolerance{2e-2, 1e-2, 2e-3} : Tolerance{4e-3, 2e-3, 2e-3};
}

std::vector<float> host_float(const void* device, DType dtype, int64_t count, cudaStream_t stream) {
  bench::DeviceBuffer<float> staging(count);
  CUDA_CHECK(bench::to_float(device, dtype, count, staging.get(), stream));
  std::vector<float> host(count);
  CUDA_CHECK(cudaMemcpyAsync(host.data(), staging.get(), staging.bytes(), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

template <class T>
void upload(bench::DeviceBuffer<T>& dst, const std::vector<T>& src, cudaStream_t stream) {
  if (src.empty()) return;
  CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.data(), dst.bytes(), cudaMemcpyHostToDevice, stream));
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse(argc, argv);
  const cudaDeviceProp prop = bench::current_device_properties();
  if (prop.major != 9 || prop.minor != 0) {
    std::fprintf(stderr, "error: the kernel needs an sm_90 GPU; %s is sm_%d%d\n", prop.name, prop.major, prop.minor);
    return 2;
  }
  if (!draftattn::sparse_attn_sm90_available(c.dtype, c.head_dim)) {
    std::fprintf(stderr, "error: %s head_dim %d is not compiled into this build (see DRAFTATTN_ATTN_KERNELS)\n",
                 bench::dtype_name(c.dtype), c.head_dim);
    return 2;
  }
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));

  // Contiguous (batch, tokens, heads, head_dim). Random values, never zeros: zeros would hide
  // output rows the kernel never writes. A wider q makes the softmax peaked, not flat.
  // fp8 inputs take one byte of each 16-bit slot; fp8 V^T spans whole blocks.
  const bool fp8 = c.dtype == DType::kFloat8E4M3;
  const int num_blocks = (c.tokens + draftattn::kBlockSize - 1) / draftattn::kBlockSize;
  const int64_t elems = int64_t(c.batch) * c.tokens * c.heads * c.head_dim;
  const int64_t v_t_elems = int64_t(c.batch) * c.heads * c.head_dim * num_blocks * draftattn::kBlockSize;
  const int64_t lse_elems = int64_t(c.batch) * c.heads * c.tokens;
  bench::DeviceBuffer<uint16_t> q(elems), k(elems), v(fp8 ? v_t_elems : elems), out(elems);
  bench::DeviceBuffer<float> lse(lse_elems);
  CUDA_CHECK(bench::fill_uniform(q.get(), c.dtype, elems, -2.f, 2.f, c.seed * 3 + 0, stream));
  CUDA_CHECK(bench::fill_uniform(k.get(), c.dtype, elems, -1.f, 1.f, c.seed * 3 + 1, stream));
  CUDA_CHECK(bench::fill_uniform(v.get(), c.dtype, fp8 ? v_t_elems : elems, -1.f, 1.f, c.seed * 3 + 2, stream));
  const int64_t block_scales = int64_t(c.batch) * c.heads * num_blocks;
  bench::DeviceBuffer<float> q_descale(fp8 ? block_scales : 0), k_descale(fp8 ? block_scales : 0),
      v_descale(fp8 ? int64_t(c.batch) * c.heads : 0);
  if (fp8) {
    CUDA_CHECK(bench::fill_uniform(q_descale.get(), block_scales, 0.5f, 1.f, c.seed * 3 + 3, stream));
    CUDA_CHECK(bench::fill_uniform(k_descale.get(), block_scales, 0.5f, 1.f, c.seed * 3 + 4, stream));
    CUDA_CHECK(bench::fill_uniform(v_descale.get(), int64_t(c.batch) * c.heads, 0.5f, 1.f, c.seed * 3 + 5, stream));
  }

  std::mt19937_64 rng(c.seed);
  std::vector<int32_t> lens;
  if (c.partial) lens = bench::random_block_lens(c.tokens, rng);
  bench::DeviceBuffer<int32_t> lens_dev(lens.size());
  upload(lens_dev, lens, stream);

  std::vector<float> q_host, k_host, v_host;
  if (c.verify) {
    q_host = host_float(q.get(), c.dtype, elems, stream);
    k_host = host_float(k.get(), c.dtype, elems, stream);
    v_host = host_float(v.get(), c.dtype, elems, stream);
  }

  draftattn::SparseAttnParams base{};
  base.q = q.get(), base.k = k.get(), base.v = v.get(), base.out = out.get(), base.lse = lse.get();
  const int64_t token_stride = int64_t(c.heads) * c.head_dim, batch_stride = c.tokens * token_stride;
  base.q_batch_stride = base.k_batch_stride = base.v_batch_stride = base.o_batch_stride = batch_stride;
  base.q_token_stride = base.k_token_stride = base.v_token_stride = base.o_token_stride = token_stride;
  base.q_head_stride = base.k_head_stride = base.v_head_stride = base.o_head_stride = c.head_dim;
  if (fp8) {  // (batch, heads, head_dim, num_blocks * 128)
    base.v_dim_stride = int64_t(num_blocks) * draftattn::kBlockSize;
    base.v_head_stride = c.head_dim * base.v_dim_stride;
    base.v_batch_stride = c.heads * base.v_head_stride;
    base.q_descale = q_descale.get(), base.k_descale = k_descale.get(), base.v_descale = v_descale.get();
  }
  base.block_lens = c.partial ? lens_dev.get() : nullptr;
  base.batch = c.batch, base.tokens = c.tokens, base.heads = c.heads, base.head_dim = c.head_dim;
  base.num_blocks = num_blocks;
  base.scale = c.scale;
  base.num_sms = prop.multiProcessorCount;

  bool failed = false;
  for (double density : c.densities) {
    const bench::BlockLists lists = bench::random_block_lists(c.batch, c.heads, num_blocks, density, c.spread, rng);
    bench::DeviceBuffer<int32_t> indices(lists.indices.size()), counts(lists.counts.size());
    upload(indices, lists.indices, stream);
    upload(counts, lists.counts, stream);
    draftattn::SparseAttnParams params = base;
    params.kv_indices = indices.get();
    params.kv_counts = counts.get();
    params.max_blocks = lists.max_blocks;
    params.idx_block_stride = lists.max_blocks;
    params.idx_head_stride = int64_t(num_blocks) * lists.max_blocks;
    params.idx_batch_stride = c.heads * params.idx_head_stride;
    params.cnt_head_stride = num_blocks;
    params.cnt_batch_stride = int64_t(c.heads) * num_blocks;

    bench::DeviceBuffer<int32_t> workspace(draftattn::sparse_attn_workspace_ints(c.batch, c.heads, num_blocks));
    params.workspace = workspace.get();
    auto launch = [&] { return draftattn::sparse_attn_sm90(params, c.dtype, stream); };

    std::string verdict;
    if (c.verify) {
      // All-ones bytes are NaN in bf16, fp16 and fp32: any element the kernel skips stays NaN.
      CUDA_CHECK(cudaMemsetAsync(out.get(), 0xFF, out.bytes(), stream));
      CUDA_CHECK(cudaMemsetAsync(lse.get(), 0xFF, lse.bytes(), stream));
      CUDA_CHECK(launch());
      CUDA_CHECK(cudaStreamSynchronize(stream));
      const std::vector<float> out_host = host_float(out.get(), c.dtype, elems, stream);
      std::vector<float> lse_host(lse_elems);
      CUDA_CHECK(cudaMemcpy(lse_host.data(), lse.get(), lse.bytes(), cudaMemcpyDeviceToHost));
      int64_t unwritten = 0;
      for (float x : out_host) unwritten += std::isnan(x);
      for (float x : lse_host) unwritten += std::isnan(x);

      const bench::HostAttention problem{c.batch, c.tokens, c.heads, c.head_dim, c.scale,
                                         &q_host, &k_host, &v_host, &lists, &lens};
      const bench::VerifyResult r = bench::verify_sample(problem, out_host, lse_host, c.verify_blocks, rng);
      const Tolerance tol = tolerance(c.dtype);
      const bool pass = unwritten == 0 && r.wrong_empty == 0 && r.not_finite == 0 && r.max_abs <= tol.max_abs &&
                        r.rel_l2 <= tol.rel_l2 && r.lse_max_abs <= tol.lse;
      failed = failed || !pass;
      char buf[320];
      std::snprintf(buf, sizeof(buf),
                    " verify: rows=%lld max_abs=%.2e rel_l2=%.2e lse_max_abs=%.2e wrong_empty=%lld "
                    "not_finite=%lld unwritten=%lld %s",
                    (long long)r.rows, r.max_abs, r.rel_l2, r.lse_max_abs, (long long)r.wrong_empty,
                    (long long)r.not_finite, (long long)unwritten, pass ? "PASS" : "FAIL");
      verdict = buf;
    }

    const float ms = bench::median_ms(stream, c.warmup, c.iters, [&](int) { return launch(); });
    const double listed = lists.density(c.batch, c.heads);
    const double flops = 4.0 * c.batch * c.heads * double(c.tokens) * c.tokens * c.head_dim * listed;
    std::printf("sparse_attn %s %dx%dx%dx%d rows=%s lens=%s density=%.3g listed=%.4f ms=%.3f TFLOP/s=%.1f%s card=\"%s\"\n",
                bench::dtype_name(c.dtype), c.batch, c.heads, c.tokens, c.head_dim,
                c.spread == bench::RowSpread::kUniform ? "uniform" : "uneven", c.partial ? "partial" : "full", density,
                listed, ms, flops / (ms * 1e-3) / 1e12, verdict.c_str(), prop.name);
    std::fflush(stdout);
  }
  CUDA_CHECK(cudaStreamDestroy(stream));
  return failed ? 1 : 0;
}
