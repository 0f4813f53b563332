// CUDA implementations of the drafting ops (mean_pool, draft_select and the layout ops) on
// the plain kernels of include/draftattn/drafting.h. Cases the kernels do not cover (fp32
// activations, unusual head dims or sizes) go to the ATen reference. No host syncs: every
// output has a shape known from the arguments.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>

#include "checks.h"
#include "draftattn/drafting.h"
#include "reference.h"
#include "token_tensor.h"

namespace draftattn {
namespace {

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "draftattn::", op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

RegionLayout region_layout(const checks::VideoGeometry& g) {
  TORCH_CHECK(g.tokens < INT32_MAX && g.num_blocks * checks::kBlockSize < INT32_MAX,
              "the layout has ", g.tokens, " tokens; the CUDA drafting kernels support fewer than 2^31");
  return {int(g.frames), int(g.height), int(g.width), int(g.region_h), int(g.region_w), int(g.text_len),
          g.text_first};
}

// Whether the layout kernels take this activation (the reference takes the rest).
// Grid: (heads, blocks, batch x tensors); y and z are limited to 65535.
bool layout_kernel_fits(const at::Tensor& x, const checks::VideoGeometry& g, int64_t tensors_per_launch) {
  return (x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16) && regions_kernel_supports(x.size(3)) &&
         g.num_blocks <= 65535 && x.size(0) * tensors_per_launch <= 65535;
}

DType dtype_of(const at::Tensor& x) { return x.scalar_type() == at::kBFloat16 ? DType::kBFloat16 : DType::kFloat16; }

GatherRegionsArgs gather_args(const at::Tensor& like, const checks::VideoGeometry& g) {
  GatherRegionsArgs a{};
  a.batch = int(like.size(0));
  a.heads = int(like.size(2));
  a.head_dim = int(like.size(3));
  a.dtype = dtype_of(like);
  a.layout = region_layout(g);
  return a;
}

at::Tensor empty_regions(const at::Tensor& x, const checks::VideoGeometry& g) {
  return at::empty({x.size(0), g.num_blocks * checks::kBlockSize, x.size(2), x.size(3)}, x.options());
}

at::Tensor empty_pooled(const at::Tensor& x, const checks::VideoGeometry& g) {
  return at::empty({x.size(0), x.size(2), g.num_regions, x.size(3)}, x.options().dtype(at::kFloat));
}

// One tensor through the gather kernel: region-major copy into `regions` and/or region means
// into `pooled` (either may be undefined).
void gather_one(const at::Tensor& x, const checks::VideoGeometry& g, const at::Tensor& regions,
                const at::Tensor& pooled, const char* op) {
  GatherRegionsArgs a = gather_args(x, g);
  a.num_tensors = 1;
  a.src[0] = token_tensor(x);
  if (regions.defined()) {
    a.dst[0] = regions.data_ptr();
    a.dst_strides[0] = token_tensor(regions);
  }
  if (pooled.defined()) a.pooled[0] = pooled.data_ptr<float>();
  check_launch(gather_regions(a, current_stream(x)), op);
}

at::Tensor mean_pool_cuda(const at::Tensor& x_in, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                          int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  checks::check_layout_activation(x_in, "x", g.tokens, "model order: frames*height*width + text_len");
  if (!layout_kernel_fits(x_in, g, 1))
    return reference::mean_pool(x_in, frames, height, width, region_h, region_w, text_len, text_first);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = unit_last_stride(x_in);
  at::Tensor pooled = empty_pooled(x, g);
  gather_one(x, g, at::Tensor(), pooled, "mean_pool");
  return pooled;
}

at::Tensor to_regions_cuda(const at::Tensor& x_in, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                           int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  checks::check_layout_activation(x_in, "x", g.tokens, "model order: frames*height*width + text_len");
  if (!layout_kernel_fits(x_in, g, 1))
    return reference::to_regions(x_in, frames, height, width, region_h, region_w, text_len, text_first);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = unit_last_stride(x_in);
  at::Tensor out = empty_regions(x, g);
  gather_one(x, g, out, at::Tensor(), "to_regions");
  return out;
}

at::Tensor from_regions_cuda(const at::Tensor& x_in, int64_t frames, int64_t height, int64_t width, int64_t region_h,
                             int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_video_geometry(frames, height, width, region_h, region_w, text_len, text_first);
  checks::check_layout_activation(x_in, "x", g.num_blocks * checks::kBlockSize, "padded region-major: num_blocks*128");
  if (!layout_kernel_fits(x_in, g, 1))
    return reference::from_regions(x_in, frames, height, width, region_h, region_w, text_len, text_first);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = unit_last_stride(x_in);
  at::Tensor out = at::empty({x.size(0), g.tokens, x.size(2), x.size(3)}, x.options());
  ScatterRegionsArgs a{};
  a.src = token_tensor(x);
  a.dst = out.data_ptr();
  a.dst_strides = token_tensor(out);
  a.batch = int(x.size(0));
  a.heads = int(x.size(2));
  a.head_dim = int(x.size(3));
  a.dtype = dtype_of(x);
  a.layout = region_layout(g);
  check_launch(scatter_regions(a, current_stream(x)), "from_regions");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> to_regions_and_pool_cuda(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, int64_t frames, int64_t height,
    int64_t width, int64_t region_h, int64_t region_w, int64_t text_len, bool text_first) {
  const auto g = checks::check_to_regions_and_pool_inputs(q_in, k_in, v_in, frames, height, width, region_h,
                                                          region_w, text_len, text_first);
  if (!layout_kernel_fits(q_in, g, 3))
    return reference::to_regions_and_pool(q_in, k_in, v_in, frames, height, width, region_h, region_w, text_len,
                                          text_first);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor inputs[3] = {unit_last_stride(q_in), unit_last_stride(k_in), unit_last_stride(v_in)};
  at::Tensor regions[3], pooled[2];
  GatherRegionsArgs a = gather_args(inputs[0], g);
  a.num_tensors = 3;
  for (int t = 0; t < 3; ++t) {
    regions[t] = empty_regions(inputs[t], g);
    a.src[t] = token_tensor(inputs[t]);
    a.dst[t] = regions[t].data_ptr();
    a.dst_strides[t] = token_tensor(regions[t]);
    if (t < 2) {
      pooled[t] = empty_pooled(inputs[t], g);
      a.pooled[t] = pooled[t].data_ptr<float>();
    }
  }
  check_launch(gather_regions(a, current_stream(inputs[0])), "to_regions_and_pool");
  return {regions[0], regions[1], regions[2], pooled[0], pooled[1]};
}

std::tuple<at::Tensor, at::Tensor> draft_select_cuda(const at::Tensor& q_pooled_in, const at::Tensor& k_pooled_in,
                                                     c10::string_view rule, double sparsity, double top_p,
                                                     int64_t text_blocks, bool text_first) {
  const int64_t S = checks::check_draft_select_inputs(q_pooled_in, k_pooled_in, rule, sparsity, top_p, text_blocks);
  const SelectRule select_rule =
      rule == "global" ? SelectRule::kGlobal : rule == "topk" ? SelectRule::kTopK : SelectRule::kTopP;
  const int64_t batch = q_pooled_in.size(0), heads = q_pooled_in.size(1), head_dim = q_pooled_in.size(3);
  const int64_t nb = S + text_blocks;
  const bool fits = S * S <= INT32_MAX && batch * heads <= 65535 &&
                    (select_rule == SelectRule::kGlobal || S <= kMaxRowSelectRegions);
  if (!fits) return reference::draft_select(q_pooled_in, k_pooled_in, rule, sparsity, top_p, text_blocks, text_first);

  const c10::cuda::CUDAGuard guard(q_pooled_in.device());
  const at::Tensor q_pooled = q_pooled_in.contiguous(), k_pooled = k_pooled_in.contiguous();
  const auto int_options = q_pooled.options().dtype(at::kInt);
  // One scratch buffer from the caching allocator; the kernels initialise what they read.
  const size_t workspace_bytes = draft_select_workspace_bytes(int(batch * heads), int(S), select_rule);
  at::Tensor workspace = at::empty({int64_t(workspace_bytes)}, q_pooled.options().dtype(at::kByte));
  at::Tensor kv_indices = at::empty({batch, heads, nb, nb}, int_options);
  at::Tensor kv_counts = at::empty({batch, heads, nb}, int_options);

  DraftSelectArgs a{};
  a.q_pooled = q_pooled.data_ptr<float>();
  a.k_pooled = k_pooled.data_ptr<float>();
  a.workspace = workspace.data_ptr();
  a.kv_indices = kv_indices.data_ptr<int32_t>();
  a.kv_counts = kv_counts.data_ptr<int32_t>();
  a.batch_heads = int(batch * heads);
  a.num_regions = int(S);
  a.head_dim = int(head_dim);
  a.rule = select_rule;
  a.sparsity = sparsity;
  a.top_p = top_p;
  a.text_blocks = int(text_blocks);
  a.text_first = text_first;
  check_launch(draftattn::draft_select(a, current_stream(q_pooled)), "draft_select");
  return {kv_indices, kv_counts};
}

}  // namespace
}  // namespace draftattn

TORCH_LIBRARY_IMPL(draftattn, CUDA, m) {
  m.impl("mean_pool", &draftattn::mean_pool_cuda);
  m.impl("draft_select", &draftattn::draft_select_cuda);
  m.impl("to_regions", &draftattn::to_regions_cuda);
  m.impl("from_regions", &draftattn::from_regions_cuda);
  m.impl("to_regions_and_pool", &draftattn::to_regions_and_pool_cuda);
}
