"""Build draftattn_cuda._C.

With a CUDA toolkit: the reference ops plus the CUDA kernels (sm_90a). Without one: the
reference ops only (CPU, and torch-op fallbacks on any device), and the build says so.

Environment:
  CUDA_HOME            toolkit root (defaults to /usr/local/cuda when that exists)
  CUTLASS_DIR          a CUTLASS source tree (else third_party/cutlass, else the
                       nvidia-cutlass wheel)
  DRAFTATTN_REQUIRE_CUDA=1   fail instead of falling back to a CPU-only build
  DRAFTATTN_ATTN_KERNELS     comma list of attention instantiations to build, e.g.
                       "bf16_hd128" (development builds); default: all
  MAX_JOBS             parallel compile jobs
"""
import glob
import importlib.util
import os
import shutil
import sys

if "CUDA_HOME" not in os.environ and os.path.isdir("/usr/local/cuda"):
    # /usr/local/bin/nvcc may be a wrapper script; torch would then guess CUDA_HOME=/usr/local.
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def find_cutlass():
    candidates = [os.environ.get("CUTLASS_DIR"), os.path.join(ROOT, "third_party", "cutlass")]
    spec = importlib.util.find_spec("cutlass_library")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(os.path.join(spec.submodule_search_locations[0], "source"))
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, "include", "cute", "tensor.hpp")):
            return path
    return None


def have_nvcc():
    cuda_home = os.environ.get("CUDA_HOME", "")
    return os.path.isfile(os.path.join(cuda_home, "bin", "nvcc")) or shutil.which("nvcc") is not None


def attention_sources():
    wanted = os.environ.get("DRAFTATTN_ATTN_KERNELS")
    files = sorted(glob.glob(os.path.join("csrc", "attention", "sparse_attn_sm90_*.cu")))
    if not wanted:
        return files
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    return [f for f in files if os.path.basename(f)[len("sparse_attn_sm90_"):-3] in names]


def make_extension():
    host_sources = sorted(glob.glob(os.path.join("csrc", "ops", "*.cpp")))
    # No -std for host code: torch adds the standard its own headers were built for (C++17 in
    # 2.11, C++20 in 2.14); forcing C++20 under torch 2.11 instantiates libstdc++ stream code
    # in our library that crashes against the runtime's (seen on the H100 machine).
    cxx_flags = ["-O3"]
    include_dirs = [os.path.join(ROOT, "include")]
    cuda_ok = have_nvcc()
    cutlass = find_cutlass() if cuda_ok else None
    if os.environ.get("DRAFTATTN_REQUIRE_CUDA") == "1" and (not cuda_ok or cutlass is None):
        sys.exit("DRAFTATTN_REQUIRE_CUDA=1 but " + ("nvcc was not found" if not cuda_ok else
                 "CUTLASS was not found (pip install --no-deps nvidia-cutlass==4.2.0.0)"))
    if not cuda_ok or cutlass is None:
        print("draftattn: building the CPU reference ops only ("
              + ("no CUDA toolkit" if not cuda_ok else "no CUTLASS headers") + ")", file=sys.stderr)
        host_sources = [s for s in host_sources if not s.endswith("_cuda.cpp")]
        return CppExtension("draftattn_cuda._C", host_sources, include_dirs=include_dirs,
                            extra_compile_args={"cxx": cxx_flags}, py_limited_api=False)

    print(f"draftattn: building CUDA kernels for sm_90a with CUTLASS at {cutlass}", file=sys.stderr)
    kernels = attention_sources()
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "drafting", "*.cu")))
    cuda_sources += [os.path.join("csrc", "attention", name) for name in ("dispatch.cu", "tile_order.cu")] + kernels
    compiled = [os.path.basename(f)[len("sparse_attn_sm90_"):-3].upper() for f in kernels]
    include_dirs += [os.path.join(cutlass, "include"), os.path.join(cutlass, "tools", "util", "include")]
    nvcc_flags = [
        "-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a",
        "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
        "-DNDEBUG", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-DCUTLASS_ENABLE_GDC_FOR_SM90", "--resource-usage", "-lineinfo",
    ]
    return CUDAExtension("draftattn_cuda._C", host_sources + cuda_sources, include_dirs=include_dirs,
                         define_macros=[("DRAFTATTN_WITH_CUDA", "1")]
                         + [(f"DRAFTATTN_HAS_{name}", "1") for name in compiled],
                         extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags})


setup(
    name="draftattn_cuda",
    version="0.1.0",
    description="DraftAttention: draft-guided block-sparse attention for video diffusion transformers",
    packages=["draftattn_cuda"],
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.10",
)
