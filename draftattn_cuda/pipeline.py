"""draft_attention: the whole DraftAttention call for one self-attention layer."""
import torch

from .ops import quantize_fp8, sparse_attn, sparse_attn_fp8

_ops = torch.ops.draftattn


def draft_attention(q, k, v, layout, sparsity=0.9, rule="global", top_p=0.9, scale=None, return_stats=False,
                    precision="native"):
    """Block-sparse attention guided by a pooled draft map; output in the model's token order.

    q, k, v: (batch, layout.tokens, heads, head_dim) fp16/bf16 in model order. Steps: permute to
    region-major and pool q, k -> select kv blocks from the draft map (`rule`: "global",
    "topk" or "topp") -> exact attention over the kept blocks -> inverse permutation.
    precision="fp8" quantises q, k, v to e4m3 (per-block scales) for the attention itself;
    the output keeps q's dtype. With return_stats, also returns a dict of device tensors (no host sync): kv_indices,
    kv_counts, lse (region-major) and density, the kept fraction of valid token pairs.
    """
    q_regions, k_regions, v_regions, q_pooled, k_pooled = _ops.to_regions_and_pool.default(q, k, v, *layout.op_args)
    kv_indices, kv_counts = _ops.draft_select.default(q_pooled, k_pooled, rule, sparsity, top_p,
                                                      layout.text_blocks, layout.text_first)
    block_lens = layout.block_lens(q.device)
    if precision == "fp8":
        quantized = quantize_fp8(q_regions, k_regions, v_regions)
        out_regions, lse = sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:], block_lens, scale)
        out_regions = out_regions.to(q.dtype)
    elif precision == "native":
        out_regions, lse = sparse_attn(q_regions, k_regions, v_regions, kv_indices, kv_counts, block_lens, scale)
    else:
        raise ValueError(f"precision must be 'native' or 'fp8', got {precision!r}")
    out = _ops.from_regions.default(out_regions, *layout.op_args)
    if not return_stats:
        return out
    stats = {"kv_indices": kv_indices, "kv_counts": kv_counts, "lse": lse,
             "density": kept_token_pair_fraction(kv_indices, kv_counts, block_lens, layout.tokens)}
    return out, stats


def kept_token_pair_fraction(kv_indices, kv_counts, block_lens, tokens):
    """Fraction of (valid query, valid key) token pairs that the block lists compute, per batch and head."""
    listed = torch.arange(kv_indices.shape[-1], device=kv_indices.device) < kv_counts.unsqueeze(-1)
    key_lens = block_lens.long()[kv_indices.clamp(min=0).long()] * listed
    pairs = (key_lens.sum(-1) * block_lens.long()).sum(-1)
    return pairs.double() / float(tokens * tokens)
