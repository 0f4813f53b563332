"""DraftAttention for video diffusion transformers: draft-guided block-sparse attention.

Importing the package loads the compiled ops (torch.ops.draftattn.*) and their fake kernels.
"""
import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

try:
    from . import _C  # noqa: F401  (runs the op registrations)
except ModuleNotFoundError as error:
    raise ImportError(
        "draftattn_cuda._C is not built. Build it with `pip install --no-build-isolation -e .` "
        "from the repository root (see README.md)."
    ) from error

from . import _fake  # noqa: F401,E402  (fake kernels for torch.compile)
from .build_info import cuda_kernels_built  # noqa: E402
from .checks import validate_block_lists  # noqa: E402
from .integration import DraftConfig, denoising_step_callback, disable, enable, set_step  # noqa: E402
from .layout import VideoLayout  # noqa: E402
from .ops import (draft_select, mean_pool, quantize_fp8, sparse_attn, sparse_attn_fp8,  # noqa: E402
                  to_regions_and_quantize_fp8)
from .pipeline import draft_attention, draft_attention_regions  # noqa: E402

__all__ = [
    "DraftConfig",
    "VideoLayout",
    "cuda_kernels_built",
    "denoising_step_callback",
    "disable",
    "draft_attention",
    "draft_attention_regions",
    "draft_select",
    "enable",
    "mean_pool",
    "quantize_fp8",
    "set_step",
    "sparse_attn",
    "sparse_attn_fp8",
    "to_regions_and_quantize_fp8",
    "validate_block_lists",
]
