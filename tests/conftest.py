"""Shared test setup. GPU tests mark themselves `@pytest.mark.requires_cuda_build` (or set
`pytestmark = pytest.mark.requires_cuda_build`); they skip with the reason when there is no
CUDA device or the extension was built without its CUDA kernels."""
import pytest
import torch

import draftattn_cuda


def cuda_build_missing_reason():
    """Why CUDA tests cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    if not draftattn_cuda.cuda_kernels_built():
        return "draftattn_cuda was built without CUDA kernels (CPU-only build: no nvcc or CUTLASS at build time)"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_cuda_build: needs a CUDA device and a CUDA build of draftattn_cuda")


def pytest_collection_modifyitems(config, items):
    reason = cuda_build_missing_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("requires_cuda_build"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng():
    """A generator with a fresh seed per test (printed on failure by pytest's captured output)."""
    seed = torch.seed()
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)
