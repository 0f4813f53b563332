"""Thin Python entry points of the draftattn ops."""
import torch

from .checks import check_sparse_attn_args


def sparse_attn(q, k, v, kv_indices, kv_counts, block_lens=None, scale=None):
    """Exact attention over listed 128x128 blocks; returns (out, lse). See docs/CONTRACT.md.

    q, k, v: (batch, tokens, heads, head_dim) fp16/bf16 in region-major order; kv_indices int32
    (batch, heads, num_blocks, max_blocks) ascending; kv_counts int32 (batch, heads, num_blocks);
    block_lens int32 (num_blocks,), (batch, num_blocks) or None; scale defaults to 1/sqrt(head_dim).
    """
    check_sparse_attn_args(q, k, v, kv_indices, kv_counts, block_lens, scale)
    return torch.ops.draftattn.sparse_attn.default(q, k, v, kv_indices, kv_counts, block_lens, scale)


def quantize_fp8(q, k, v):
    """e4m3 inputs for sparse_attn_fp8 from region-major q, k, v (batch, tokens, heads, head_dim).

    Returns (q8, k8, v_t8, q_descale, k_descale, v_descale): q8, k8 keep the layout; v_t8 is
    V^T, (batch, heads, head_dim, num_blocks*128) in the fp8 key order (docs/CONTRACT.md);
    the fp32 factors that undo the quantisation are per (batch, head, block) for q, k and per
    (batch, head) for v.
    """
    return torch.ops.draftattn.quantize_fp8.default(q, k, v)


def to_regions_and_quantize_fp8(q, k, v, layout):
    """quantize_fp8 of the region-major q, k, v plus their region means, in one pass from model order.

    q, k, v: (batch, layout.tokens, heads, head_dim) fp16/bf16 in model order, head_dim 64 or 128.
    Returns (q8, k8, v_t8, q_descale, k_descale, v_descale, q_pooled, k_pooled): the first six
    bit-identical to quantize_fp8(*to_regions_and_pool(q, k, v, ...)[:3]), the pooled means
    fp32 (batch, heads, num_regions, head_dim) identical to to_regions_and_pool's.
    """
    return torch.ops.draftattn.to_regions_and_quantize_fp8.default(q, k, v, *layout.op_args)


def sparse_attn_fp8(q8, k8, v_t8, kv_indices, kv_counts, q_descale, k_descale, v_descale, block_lens=None,
                    scale=None):
    """sparse_attn on e4m3 inputs from quantize_fp8 (or the same format); bf16 out, fp32 lse."""
    return torch.ops.draftattn.sparse_attn_fp8.default(q8, k8, v_t8, kv_indices, kv_counts, q_descale, k_descale,
                                                       v_descale, block_lens, scale)


def mean_pool(x, layout):
    """fp32 (batch, heads, num_regions, head_dim): per-region means of x given in model order."""
    return torch.ops.draftattn.mean_pool.default(x, *layout.op_args)


def draft_select(q_pooled, k_pooled, layout, rule="global", sparsity=0.9, top_p=0.9):
    """Block lists (kv_indices, kv_counts) chosen from the draft map of pooled q and k."""
    return torch.ops.draftattn.draft_select.default(q_pooled, k_pooled, rule, sparsity, top_p,
                                                    layout.text_blocks, layout.text_first)
