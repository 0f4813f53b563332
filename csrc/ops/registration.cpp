// Op schemas of the draftattn namespace. Implementations register per dispatch key in
// reference.cpp (CPU reference) and *_cuda.cpp (CUDA kernels); docs/CONTRACT.md fixes the
// data formats.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(draftattn, m) {
  m.def(
      "sparse_attn(Tensor q, Tensor k, Tensor v, Tensor kv_indices, Tensor kv_counts, "
      "Tensor? block_lens=None, float? scale=None) -> (Tensor out, Tensor lse)");
  m.def(
      "sparse_attn_fp8(Tensor q, Tensor k, Tensor v_t, Tensor kv_indices, Tensor kv_counts, Tensor q_descale, "
      "Tensor k_descale, Tensor v_descale, Tensor? block_lens=None, float? scale=None) -> (Tensor out, Tensor lse)");
  m.def(
      "quantize_fp8(Tensor q, Tensor k, Tensor v) -> (Tensor q_fp8, Tensor k_fp8, Tensor v_t_fp8, Tensor q_descale, "
      "Tensor k_descale, Tensor v_descale)");
  m.def(
      "mean_pool(Tensor x, int frames, int height, int width, int region_h=8, int region_w=16, "
      "int text_len=0, bool text_first=False) -> Tensor");
  m.def(
      "draft_select(Tensor q_pooled, Tensor k_pooled, str rule='global', float sparsity=0.9, "
      "float top_p=0.9, int text_blocks=0, bool text_first=False) -> (Tensor kv_indices, Tensor kv_counts)");
  m.def(
      "to_regions(Tensor x, int frames, int height, int width, int region_h=8, int region_w=16, "
      "int text_len=0, bool text_first=False) -> Tensor");
  m.def(
      "from_regions(Tensor x, int frames, int height, int width, int region_h=8, int region_w=16, "
      "int text_len=0, bool text_first=False) -> Tensor");
  m.def(
      "to_regions_and_pool(Tensor q, Tensor k, Tensor v, int frames, int height, int width, "
      "int region_h=8, int region_w=16, int text_len=0, bool text_first=False) -> "
      "(Tensor q_regions, Tensor k_regions, Tensor v_regions, Tensor q_pooled, Tensor k_pooled)");
  m.def(
      "to_regions_and_quantize_fp8(Tensor q, Tensor k, Tensor v, int frames, int height, int width, "
      "int region_h=8, int region_w=16, int text_len=0, bool text_first=False) -> "
      "(Tensor q_fp8, Tensor k_fp8, Tensor v_t_fp8, Tensor q_descale, Tensor k_descale, Tensor v_descale, "
      "Tensor q_pooled, Tensor k_pooled)");
}

// Importing draftattn_cuda._C runs the registrations above; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
