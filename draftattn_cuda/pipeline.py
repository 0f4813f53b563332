"""draft_attention: the whole DraftAttention call for one self-attention layer.

`draft_attention` takes q, k, v in the model's token order; `draft_attention_regions` takes them
already in the padded region-major order (a transformer that stays in that order between its
patch embedding and its output projection pays no permutation per layer).
"""
import torch

from .layout import BLOCK_SIZE
from .ops import quantize_fp8, sparse_attn, sparse_attn_fp8

_ops = torch.ops.draftattn
PRECISIONS = ("native", "fp8")


def draft_attention(q, k, v, layout, sparsity=0.9, rule="global", top_p=0.9, scale=None, return_stats=False,
                    precision="native", text_lens=None):
    """Block-sparse attention guided by a pooled draft map; output in the model's token order.

    q, k, v: (batch, layout.tokens, heads, head_dim) fp16/bf16 in model order. Steps: permute to
    region-major and pool q, k -> select kv blocks from the draft map (`rule`: "global",
    "topk" or "topp") -> exact attention over the kept blocks -> inverse permutation.
    precision="fp8" quantises q, k, v to e4m3 (per-block scales) for the attention itself;
    the output keeps q's dtype. text_lens: optional integer tensor (batch,) on q's device, the
    valid (unpadded) text tokens of each sample, counted from the start of the text; text keys
    past it are ignored and their query rows give 0 (values are clamped to [0, layout.text_len]).
    With return_stats, also returns a dict of device tensors (no host sync): kv_indices,
    kv_counts, lse (region-major), block_lens and density, the kept fraction of valid token pairs.
    """
    _check_precision(precision)
    block_lens = key_padding_block_lens(layout, text_lens, q)
    # fp8: one pass from model order to the e4m3 inputs (the same bytes as quantize_fp8 of the
    # region-major tensors) and the region means; no bf16 region-major copies.
    to_regions = _ops.to_regions_and_quantize_fp8 if precision == "fp8" else _ops.to_regions_and_pool
    *attention_inputs, q_pooled, k_pooled = to_regions.default(q, k, v, *layout.op_args)
    kv_indices, kv_counts = _ops.draft_select.default(q_pooled, k_pooled, rule, sparsity, top_p,
                                                      layout.text_blocks, layout.text_first)
    if precision == "fp8":
        out_regions, lse = _attend_fp8(attention_inputs, kv_indices, kv_counts, block_lens, scale, q.dtype)
    else:
        out_regions, lse = sparse_attn(*attention_inputs, kv_indices, kv_counts, block_lens, scale)
    out = _ops.from_regions.default(out_regions, *layout.op_args)
    if not return_stats:
        return out
    return out, _stats(kv_indices, kv_counts, lse, block_lens)


def draft_attention_regions(q, k, v, layout, sparsity=0.9, rule="global", top_p=0.9, scale=None, return_stats=False,
                            precision="native", text_lens=None, dense=False):
    """draft_attention on q, k, v that are already in padded region-major order; output in that order.

    Rows: with `layout.text_first` the text is padded to whole blocks and the video blocks follow,
    (batch, layout.padded_tokens, heads, head_dim); otherwise the video blocks come first and the
    text follows unpadded, (batch, region_major_tokens(layout), heads, head_dim). Padding rows of
    q and k must be zero (they enter the region means, as in the reference; a rotary table that is
    zero on padding rows gives that for free); padding rows of v may hold anything. Padding rows
    of the output are 0. dense=True computes every block (exact attention over the valid tokens)
    without drafting. Other arguments as in draft_attention.
    """
    _check_precision(precision)
    expected = region_major_tokens(layout)
    if q.dim() != 4 or q.shape[1] != expected:
        raise ValueError(f"q must be (batch, {expected}, heads, head_dim) in region-major order for {layout}, "
                         f"got shape {tuple(q.shape)}")
    block_lens = key_padding_block_lens(layout, text_lens, q)
    if dense:
        kv_indices, kv_counts = all_blocks(q.shape[0], q.shape[2], layout.num_blocks, q.device)
    else:
        kv_indices, kv_counts = _ops.draft_select.default(region_means(q, layout), region_means(k, layout), rule,
                                                          sparsity, top_p, layout.text_blocks, layout.text_first)
    out, lse = _attend(q, k, v, kv_indices, kv_counts, block_lens, scale, precision)
    if not return_stats:
        return out
    return out, _stats(kv_indices, kv_counts, lse, block_lens)


def region_major_tokens(layout):
    """Rows of the region-major sequence draft_attention_regions takes (see there)."""
    if layout.text_first:
        return layout.padded_tokens
    return layout.num_regions * BLOCK_SIZE + layout.text_len


def region_means(x, layout):
    """fp32 (batch, heads, num_regions, head_dim): the mean of each video block's valid rows of region-major x,
    whose padding rows are zero (the same sums as the reference mean_pool)."""
    start = layout.text_blocks * BLOCK_SIZE if layout.text_first else 0
    video = x.narrow(1, start, layout.num_regions * BLOCK_SIZE).unflatten(1, (layout.num_regions, BLOCK_SIZE))
    sums = video.sum(2, dtype=torch.float32)  # accumulates in fp32 without an fp32 copy of x
    first_region = layout.text_blocks if layout.text_first else 0
    lens = layout.block_lens(x.device).narrow(0, first_region, layout.num_regions).to(torch.float32)
    return (sums / lens.view(1, -1, 1, 1)).permute(0, 2, 1, 3).contiguous()


def all_blocks(batch, heads, num_blocks, device):
    """Block lists that keep every block (dense attention), as broadcast views: no per-call copy."""
    indices = torch.arange(num_blocks, dtype=torch.int32, device=device)
    counts = torch.full((1,), num_blocks, dtype=torch.int32, device=device)
    return (indices.expand(batch, heads, num_blocks, num_blocks),
            counts.expand(batch, heads, num_blocks))


def key_padding_block_lens(layout, text_lens, q):
    """The `block_lens` of sparse_attn: (num_blocks,) from the layout, or (batch, num_blocks) when
    per-sample text lengths are given (text block j holds min(128, valid text - 128 j) rows, at least 0)."""
    block_lens = layout.block_lens(q.device)
    if text_lens is None:
        return block_lens
    if layout.text_len == 0:
        raise ValueError(f"text_lens needs a layout with text tokens, got {layout}")
    if not isinstance(text_lens, torch.Tensor) or text_lens.dtype.is_floating_point or text_lens.dtype.is_complex \
            or text_lens.dtype == torch.bool:
        raise ValueError(f"text_lens must be an integer tensor of shape (batch,), got {_describe(text_lens)}")
    if text_lens.shape != (q.shape[0],) or text_lens.device != q.device:
        raise ValueError(f"text_lens must have shape (batch,) = ({q.shape[0]},) on {q.device}, got "
                         f"{tuple(text_lens.shape)} on {text_lens.device}")
    starts = torch.arange(layout.text_blocks, device=q.device) * BLOCK_SIZE
    valid = text_lens.clamp(0, layout.text_len).unsqueeze(1)
    text_block_lens = (valid - starts).clamp(0, BLOCK_SIZE).to(torch.int32)
    video_block_lens = layout.block_lens(q.device)
    video_block_lens = (video_block_lens[layout.text_blocks:] if layout.text_first
                        else video_block_lens[:layout.num_regions]).expand(q.shape[0], -1)
    parts = (text_block_lens, video_block_lens) if layout.text_first else (video_block_lens, text_block_lens)
    return torch.cat(parts, dim=1)


def kept_token_pair_fraction(kv_indices, kv_counts, block_lens):
    """Fraction of (valid query, valid key) token pairs that the block lists compute, per batch and head.

    block_lens: (num_blocks,) or (batch, num_blocks); a sample's valid tokens are its block_lens' sum."""
    batch, heads, num_blocks, max_blocks = kv_indices.shape
    lens = block_lens.long().expand(batch, num_blocks)
    listed = torch.arange(max_blocks, device=kv_indices.device) < kv_counts.unsqueeze(-1)
    key_lens = torch.gather(lens.view(batch, 1, 1, num_blocks).expand(batch, heads, num_blocks, num_blocks), 3,
                            kv_indices.clamp(min=0).long().expand(batch, heads, num_blocks, max_blocks)) * listed
    pairs = (key_lens.sum(-1) * lens.unsqueeze(1)).sum(-1)
    valid_tokens = lens.sum(-1, keepdim=True)
    return pairs.double() / (valid_tokens * valid_tokens).double()


def _attend(q, k, v, kv_indices, kv_counts, block_lens, scale, precision):
    if precision == "fp8":
        return _attend_fp8(quantize_fp8(q, k, v), kv_indices, kv_counts, block_lens, scale, q.dtype)
    return sparse_attn(q, k, v, kv_indices, kv_counts, block_lens, scale)


def _attend_fp8(quantized, kv_indices, kv_counts, block_lens, scale, dtype):
    """sparse_attn_fp8 on quantize_fp8's six outputs; the output in `dtype`."""
    q8, k8, v_t8, q_descale, k_descale, v_descale = quantized
    out, lse = sparse_attn_fp8(q8, k8, v_t8, kv_indices, kv_counts, q_descale, k_descale, v_descale, block_lens, scale)
    return out.to(dtype), lse


def _stats(kv_indices, kv_counts, lse, block_lens):
    return {"kv_indices": kv_indices, "kv_counts": kv_counts, "lse": lse, "block_lens": block_lens,
            "density": kept_token_pair_fraction(kv_indices, kv_counts, block_lens)}


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _describe(x):
    return f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
