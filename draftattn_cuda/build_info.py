"""What this build of the extension contains."""
import torch

_REFERENCE_SOURCE = "reference.cpp"


def cuda_kernel_source(op: str = "sparse_attn") -> str | None:
    """The dispatcher's record of where the CUDA kernel of `draftattn::<op>` was registered."""
    for line in torch._C._dispatch_dump(f"draftattn::{op}").splitlines():
        if line.startswith("CUDA:"):
            return line
    return None


def cuda_kernels_built(op: str = "sparse_attn") -> bool:
    """True when `op` has a CUDA implementation of its own (not the CPU-only build's reference)."""
    source = cuda_kernel_source(op)
    return source is not None and _REFERENCE_SOURCE not in source
