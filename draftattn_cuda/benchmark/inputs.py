"""The q, k, v of a benchmark case, in model order and in the layout the sparse kernels read."""
from dataclasses import dataclass

import torch

from ..fidelity.inputs import video_qkv


@dataclass
class CaseInputs:
    """q, k, v (batch, tokens, heads, head_dim) in model order (what dense attention reads) and
    q_regions, k_regions, v_regions in padded region-major order (what sparse_attn reads; the same
    tensors for a flat shape); q_pooled, k_pooled are the region means (None for a flat shape)."""
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q_regions: torch.Tensor
    k_regions: torch.Tensor
    v_regions: torch.Tensor
    q_pooled: torch.Tensor = None
    k_pooled: torch.Tensor = None


def random_qkv(shape, dtype, device, generator):
    return tuple(torch.randn(shape.batch, shape.tokens, shape.heads, shape.head_dim, device=device, dtype=dtype,
                             generator=generator) for _ in range(3))


def structured_qkv(shape, dtype, device, seed):
    """Video-like q, k, v (moving objects, repeated structures, 3D rotary, noise: fidelity/inputs.py),
    a seed per batch element."""
    samples = [video_qkv(shape.layout, shape.heads, shape.head_dim, scene="video", seed=seed + b, dtype=dtype,
                         device=device) for b in range(shape.batch)]
    return tuple(torch.cat(parts, 0) for parts in zip(*samples))


def case_inputs(shape, structured, dtype, device, seed):
    """Random normal q, k, v, or structured ones (needed for drafted block lists: a video shape only)."""
    if structured:
        q, k, v = structured_qkv(shape, dtype, device, seed)
    else:
        q, k, v = random_qkv(shape, dtype, device, torch.Generator(device).manual_seed(seed))
    if shape.layout is None:
        return CaseInputs(q, k, v, q, k, v)
    return CaseInputs(q, k, v, *torch.ops.draftattn.to_regions_and_pool(q, k, v, *shape.layout.op_args))
