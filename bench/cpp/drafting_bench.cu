// Times the drafting kernels through their plain interface (include/draftattn/drafting.h) at
// one video shape: the region gather with pooling (to_regions_and_pool of q, k, v), pooling
// alone (mean_pool), the inverse scatter (from_regions), e4m3 quantisation (quantize_fp8 of the
// region-major tensors, and fused into the layout pass from model order) and draft_select.
// One line per kernel: the median time, and for the memory-bound kernels the GB/s of bytes
// read + written.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "cli.h"
#include "common.h"
#include "device_fill.h"
#include "draftattn/drafting.h"
#include "timing.h"

namespace {

using draftattn::DType;

const char* const kUsage = R"(usage: drafting_bench [flags]      (defaults: Wan-14B 720p)
  --batch N            (1)
  --frames N           latent frames (21)
  --height N           latent rows (45)
  --width N            latent columns (80)
  --heads N            (40)
  --head-dim N         (128)
  --text-len N         text tokens in the sequence (0)
  --text-first         text tokens before the video tokens (default: after)
  --region-h N         region rows; region-h x region-w must be 128 (8)
  --region-w N         region columns (16)
  --dtype bf16|fp16    activations (bf16)
  --rule global|topk|topp  draft_select rule (global)
  --sparsity X         draft_select sparsity (0.9)
  --top-p X            draft_select mass for topp (0.9)
  --iters N            timed launches, median reported (20)
  --warmup N           untimed launches first (3)
  --seed N             (0)
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

// A (batch, tokens, heads, head_dim) contiguous tensor's strides.
draftattn::TokenTensor contiguous(const void* data, int64_t tokens, int heads, int head_dim) {
  const int64_t token_stride = int64_t(heads) * head_dim;
  return {data, tokens * token_stride, token_stride, head_dim};
}

}  // namespace

int main(int argc, char** argv) {
  bench::Cli cli(argc, argv, kUsage);
  const int batch = int(cli.integer("batch", 1));
  draftattn::RegionLayout layout{};
  layout.frames = int(cli.integer("frames", 21));
  layout.height = int(cli.integer("height", 45));
  layout.width = int(cli.integer("width", 80));
  const int heads = int(cli.integer("heads", 40));
  const int head_dim = int(cli.integer("head-dim", 128));
  layout.text_len = int(cli.integer("text-len", 0));
  layout.text_first = cli.has("text-first");
  layout.region_h = int(cli.integer("region-h", 8));
  layout.region_w = int(cli.integer("region-w", 16));
  const std::string dtype_flag = cli.text("dtype", "bf16");
  const std::string rule_flag = cli.text("rule", "global");
  const double sparsity = cli.real("sparsity", 0.9);
  const double top_p = cli.real("top-p", 0.9);
  const int iters = int(cli.integer("iters", 20));
  const int warmup = int(cli.integer("warmup", 3));
  const uint64_t seed = uint64_t(cli.integer("seed", 0));
  cli.finish();

  DType dtype;
  if (!bench::parse_dtype(dtype_flag, &dtype)) usage_error("--dtype must be bf16 or fp16");
  draftattn::SelectRule rule;
  if (rule_flag == "global") rule = draftattn::SelectRule::kGlobal;
  else if (rule_flag == "topk") rule = draftattn::SelectRule::kTopK;
  else if (rule_flag == "topp") rule = draftattn::SelectRule::kTopP;
  else usage_error("--rule must be global, topk or topp");
  if (batch < 1 || heads < 1 || layout.frames < 1 || layout.height < 1 || layout.width < 1 || layout.text_len < 0)
    usage_error("--batch, --heads, --frames, --height, --width must be >= 1, --text-len >= 0");
  if (layout.region_h < 1 || layout.region_w < 1 || layout.region_h * layout.region_w != draftattn::kBlockSize)
    usage_error("--region-h x --region-w must be 128");
  if (!draftattn::regions_kernel_supports(head_dim)) usage_error("the layout kernels do not take this --head-dim");
  if (iters < 1 || warmup < 0) usage_error("--iters must be >= 1, --warmup >= 0");

  const cudaDeviceProp prop = bench::current_device_properties();
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));

  const int S = layout.num_regions(), nb = layout.num_blocks();
  const int64_t model_tokens = layout.model_tokens(), region_tokens = int64_t(nb) * draftattn::kBlockSize;
  const int64_t video_tokens = model_tokens - layout.text_len;
  const int64_t row = int64_t(heads) * head_dim;  // elements per token
  const int64_t pooled_elems = int64_t(batch) * heads * S * head_dim;

  // Model-order q, k, v; their region-major copies; pooled q, k.
  bench::DeviceBuffer<uint16_t> model[3] = {bench::DeviceBuffer<uint16_t>(batch * model_tokens * row),
                                            bench::DeviceBuffer<uint16_t>(batch * model_tokens * row),
                                            bench::DeviceBuffer<uint16_t>(batch * model_tokens * row)};
  bench::DeviceBuffer<uint16_t> regions[3] = {bench::DeviceBuffer<uint16_t>(batch * region_tokens * row),
                                              bench::DeviceBuffer<uint16_t>(batch * region_tokens * row),
                                              bench::DeviceBuffer<uint16_t>(batch * region_tokens * row)};
  bench::DeviceBuffer<float> pooled[2] = {bench::DeviceBuffer<float>(pooled_elems),
                                          bench::DeviceBuffer<float>(pooled_elems)};
  for (int t = 0; t < 3; ++t) {
    CUDA_CHECK(bench::fill_uniform(model[t].get(), dtype, model[t].count(), -1.f, 1.f, seed * 3 + t, stream));
    CUDA_CHECK(cudaMemsetAsync(regions[t].get(), 0, regions[t].bytes(), stream));
  }

  char shape[160];
  std::snprintf(shape, sizeof(shape), "%s B=%d F=%d H=%d W=%d heads=%d D=%d text=%d%s S=%d",
                bench::dtype_name(dtype), batch, layout.frames, layout.height, layout.width, heads, head_dim,
                layout.text_len, layout.text_len > 0 ? (layout.text_first ? "(first)" : "(last)") : "", S);
  auto report = [&](const char* kernel, float ms, double bytes) {
    std::printf("drafting %-20s %s ms=%.3f", kernel, shape, ms);
    if (bytes > 0) std::printf(" GB/s=%.0f", bytes / (ms * 1e-3) / 1e9);
    std::printf(" card=\"%s\"\n", prop.name);
    std::fflush(stdout);
  };
  const double half_row = double(row) * bench::kHalfBytes;  // bytes of one token, all heads

  // to_regions_and_pool: reads q, k, v once; writes three padded copies and two means.
  draftattn::GatherRegionsArgs gather{};
  gather.num_tensors = 3;
  gather.batch = batch, gather.heads = heads, gather.head_dim = head_dim, gather.dtype = dtype, gather.layout = layout;
  for (int t = 0; t < 3; ++t) {
    gather.src[t] = contiguous(model[t].get(), model_tokens, heads, head_dim);
    gather.dst[t] = regions[t].get();
    gather.dst_strides[t] = contiguous(nullptr, region_tokens, heads, head_dim);
    gather.pooled[t] = t < 2 ? pooled[t].get() : nullptr;
  }
  float ms = bench::median_ms(stream, warmup, iters, [&](int) { return draftattn::gather_regions(gather, stream); });
  report("to_regions_and_pool", ms,
         batch * (3 * half_row * (model_tokens + region_tokens)) + 2.0 * pooled_elems * sizeof(float));

  // mean_pool: one tensor, means only (text tokens are neither pooled nor read).
  draftattn::GatherRegionsArgs pool = gather;
  pool.num_tensors = 1;
  pool.dst[0] = nullptr;
  ms = bench::median_ms(stream, warmup, iters, [&](int) { return draftattn::gather_regions(pool, stream); });
  report("mean_pool", ms, batch * half_row * video_tokens + double(pooled_elems) * sizeof(float));

  // from_regions: the attention output back to model order (padding rows neither read nor written).
  draftattn::ScatterRegionsArgs scatter{};
  scatter.src = contiguous(regions[0].get(), region_tokens, heads, head_dim);
  scatter.dst = model[0].get();
  scatter.dst_strides = contiguous(nullptr, model_tokens, heads, head_dim);
  scatter.batch = batch, scatter.heads = heads, scatter.head_dim = head_dim, scatter.dtype = dtype;
  scatter.layout = layout;
  ms = bench::median_ms(stream, warmup, iters, [&](int) { return draftattn::scatter_regions(scatter, stream); });
  report("from_regions", ms, 2.0 * batch * half_row * model_tokens);

  // fp8: quantize_fp8 of the region-major copies, and the fused pass from model order. Both
  // read v twice (its per-head maximum first) and write one byte per element.
  const int64_t fp8_elems = batch * region_tokens * row;
  bench::DeviceBuffer<uint8_t> fp8[3] = {bench::DeviceBuffer<uint8_t>(fp8_elems), bench::DeviceBuffer<uint8_t>(fp8_elems),
                                         bench::DeviceBuffer<uint8_t>(fp8_elems)};
  bench::DeviceBuffer<float> q_descale(int64_t(batch) * heads * nb), k_descale(int64_t(batch) * heads * nb),
      v_descale(int64_t(batch) * heads);
  bench::DeviceBuffer<uint32_t> v_amax(int64_t(batch) * heads);
  if (draftattn::quantize_fp8_kernel_fits(batch, region_tokens, heads, head_dim)) {
    draftattn::QuantizeFp8Args quantize{};
    quantize.q = contiguous(regions[0].get(), region_tokens, heads, head_dim);
    quantize.k = contiguous(regions[1].get(), region_tokens, heads, head_dim);
    quantize.v = contiguous(regions[2].get(), region_tokens, heads, head_dim);
    quantize.q_fp8 = fp8[0].get(), quantize.k_fp8 = fp8[1].get(), quantize.v_t_fp8 = fp8[2].get();
    quantize.q_descale = q_descale.get(), quantize.k_descale = k_descale.get(), quantize.v_descale = v_descale.get();
    quantize.v_amax = v_amax.get();
    quantize.batch = batch, quantize.tokens = int(region_tokens), quantize.heads = heads, quantize.head_dim = head_dim;
    quantize.dtype = dtype;
    ms = bench::median_ms(stream, warmup, iters, [&](int) { return draftattn::quantize_fp8(quantize, stream); });
    report("quantize_fp8", ms, batch * (4 * half_row * region_tokens + 3.0 * row * region_tokens));
  }
  if (draftattn::regions_fp8_kernel_fits(batch, heads, head_dim, model_tokens, nb)) {
    draftattn::RegionsFp8Args fused{};
    fused.q = gather.src[0], fused.k = gather.src[1], fused.v = gather.src[2];
    fused.q_fp8 = fp8[0].get(), fused.k_fp8 = fp8[1].get(), fused.v_t_fp8 = fp8[2].get();
    fused.q_descale = q_descale.get(), fused.k_descale = k_descale.get(), fused.v_descale = v_descale.get();
    fused.q_pooled = pooled[0].get(), fused.k_pooled = pooled[1].get();
    fused.v_amax = v_amax.get();
    fused.batch = batch, fused.heads = heads, fused.head_dim = head_dim, fused.dtype = dtype, fused.layout = layout;
    ms = bench::median_ms(stream, warmup, iters, [&](int) { return draftattn::to_regions_quantize_fp8(fused, stream); });
    report("to_regions_fp8", ms,
           batch * (4 * half_row * model_tokens + 3.0 * row * region_tokens) + 2.0 * pooled_elems * sizeof(float));
  }

  // draft_select on the pooled q, k just produced (real means of random tokens).
  const int batch_heads = batch * heads;
  bench::DeviceBuffer<uint8_t> workspace(draftattn::draft_select_workspace_bytes(batch_heads, S, rule));
  bench::DeviceBuffer<int32_t> kv_counts(int64_t(batch_heads) * nb);
  bench::DeviceBuffer<int32_t> kv_indices(int64_t(batch_heads) * nb * nb);
  draftattn::DraftSelectArgs select{};
  select.q_pooled = pooled[0].get(), select.k_pooled = pooled[1].get();
  select.workspace = workspace.get();
  select.kv_indices = kv_indices.get(), select.kv_counts = kv_counts.get();
  select.batch_heads = batch_heads, select.num_regions = S, select.head_dim = head_dim;
  select.rule = rule, select.sparsity = sparsity, select.top_p = top_p;
  select.text_blocks = layout.text_blocks(), select.text_first = layout.text_first;
  ms = bench::median_ms(stream, warmup, iters, [&](int) { return draftattn::draft_select(select, stream); });
  const std::string label = "draft_select_" + rule_flag;
  report(label.c_str(), ms, 0);

  CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
