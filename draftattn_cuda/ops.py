"""Thin Python entry points of the draftattn ops."""
import torch

from .checks import check_sparse_attn_args


def sparse_attn(q, k, v, kv_indices, kv_counts, block_lens=None, scale=None):
    """Exact attention over listed 128x128 blocks; returns (out, lse). See docs/CONTRACT.md.

    q, k, v: (batch, tokens, heads, head_dim) fp16/bf16 in region-major order; kv_indices int32
    (batch, heads, num_blocks, max_blocks) ascending; kv_counts int32 (batch, heads, num_blocks);
    block_lens int32 (num_blocks,) or None; scale defaults to 1/sqrt(head_dim).
    """
    check_sparse_attn_args(q, k, v, kv_indices, kv_counts, block_lens, scale)
    return torch.ops.draftattn.sparse_attn.default(q, k, v, kv_indices, kv_counts, block_lens, scale)


def mean_pool(x, layout):
    """fp32 (batch, heads, num_regions, head_dim): per-region means of x given in model order."""
    return torch.ops.draftattn.mean_pool.default(x, *layout.op_args)


def draft_select(q_pooled, k_pooled, layout, rule="global", sparsity=0.9, top_p=0.9):
    """Block lists (kv_indices, kv_counts) chosen from the draft map of pooled q and k."""
    return torch.ops.draftattn.draft_select.default(q_pooled, k_pooled, rule, sparsity, top_p,
                                                    layout.text_blocks, layout.text_first)
