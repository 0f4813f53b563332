"""Python-side argument checks: clear errors before dispatch, also run by the fake kernels.

They read only metadata (no host sync). `validate_block_lists` reads values and syncs; call
it explicitly when debugging block lists that live on the GPU.
"""
import torch

BLOCK_SIZE = 128
ATTN_DTYPES = (torch.float16, torch.bfloat16)
HEAD_DIMS = (64, 128)


def check_sparse_attn_args(q, k, v, kv_indices, kv_counts, block_lens=None, scale=None):
    """Raises ValueError naming the first bad argument of sparse_attn. Returns num_blocks."""
    if q.dim() != 4:
        raise ValueError(f"q must be 4-D (batch, tokens, heads, head_dim), got shape {tuple(q.shape)}")
    if q.dtype not in ATTN_DTYPES:
        raise ValueError(f"q must be float16 or bfloat16, got {q.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{name} must match q in dtype and device ({q.dtype}, {q.device}), "
                             f"got ({t.dtype}, {t.device})")
        if t.shape != q.shape:
            raise ValueError(f"{name} must have the shape of q {tuple(q.shape)}, got {tuple(t.shape)}")
    batch, tokens, heads, head_dim = q.shape
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim (last dim of q, k, v) must be 64 or 128, got {head_dim}")
    if any(t.stride(-1) != 1 for t in (q, k, v)):
        raise ValueError("q, k and v must be contiguous in the last dim (head_dim stride 1)")
    num_blocks = (tokens + BLOCK_SIZE - 1) // BLOCK_SIZE
    _check_index_tensor("kv_indices", kv_indices, q, (batch, heads, num_blocks, None),
                        "(batch, heads, num_blocks, max_blocks)")
    _check_index_tensor("kv_counts", kv_counts, q, (batch, heads, num_blocks), "(batch, heads, num_blocks)")
    if block_lens is not None:
        if block_lens.dim() == 2:
            _check_index_tensor("block_lens", block_lens, q, (batch, num_blocks),
                                "(num_blocks,) or (batch, num_blocks)")
        else:
            _check_index_tensor("block_lens", block_lens, q, (num_blocks,), "(num_blocks,) or (batch, num_blocks)")
    if scale is not None and not (scale > 0 and scale != float("inf")):
        raise ValueError(f"scale must be a finite positive number, got {scale!r}")
    return num_blocks


def _check_index_tensor(name, t, q, shape, shape_text):
    if t.dtype != torch.int32:
        raise ValueError(f"{name} must be int32, got {t.dtype}")
    if t.device != q.device:
        raise ValueError(f"{name} must be on the device of q ({q.device}), got {t.device}")
    if t.dim() != len(shape) or any(want is not None and have != want for have, want in zip(t.shape, shape)):
        wanted = tuple("max_blocks" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {shape_text} = {wanted}, got {tuple(t.shape)}")


def validate_block_lists(kv_indices, kv_counts, block_lens=None, tokens=None):
    """Checks the VALUES of sparse_attn block lists (syncs with the device).

    counts in [0, max_blocks]; the listed indices of each row strictly ascending in
    [0, num_blocks); block_lens in [0, 128], the last block's within `tokens` when given.
    Raises ValueError describing the first violation.
    """
    num_blocks, max_blocks = kv_counts.shape[-1], kv_indices.shape[-1]
    counts = kv_counts.long()
    if ((counts < 0) | (counts > max_blocks)).any():
        raise ValueError(f"kv_counts entries must be in [0, max_blocks={max_blocks}]")
    listed = torch.arange(max_blocks, device=kv_indices.device) < counts.unsqueeze(-1)
    indices = kv_indices.long()
    if (listed & ((indices < 0) | (indices >= num_blocks))).any():
        raise ValueError(f"kv_indices entries within kv_counts must be in [0, num_blocks={num_blocks})")
    if max_blocks > 1 and (listed[..., 1:] & (indices[..., 1:] <= indices[..., :-1])).any():
        raise ValueError("kv_indices rows must be strictly ascending within kv_counts")
    if block_lens is not None:
        if ((block_lens < 0) | (block_lens > BLOCK_SIZE)).any():
            raise ValueError("block_lens entries must be in [0, 128]")
        if tokens is not None and int(block_lens[..., -1].max()) > tokens - (num_blocks - 1) * BLOCK_SIZE:
            raise ValueError(f"block_lens of the last block exceeds what tokens={tokens} leaves")
