"""Fake (meta) kernels: output metadata of every op, for torch.compile and FakeTensor."""
import torch

from .checks import check_sparse_attn_args
from .layout import VideoLayout


def _layout(frames, height, width, region_h, region_w, text_len, text_first):
    return VideoLayout(frames, height, width, (region_h, region_w), text_len, text_first)


@torch.library.register_fake("draftattn::sparse_attn")
def _sparse_attn(q, k, v, kv_indices, kv_counts, block_lens=None, scale=None):
    check_sparse_attn_args(q, k, v, kv_indices, kv_counts, block_lens, scale)
    batch, tokens, heads, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((batch, heads, tokens), dtype=torch.float32)


@torch.library.register_fake("draftattn::sparse_attn_fp8")
def _sparse_attn_fp8(q, k, v_t, kv_indices, kv_counts, q_descale, k_descale, v_descale, block_lens=None, scale=None):
    batch, tokens, heads, _ = q.shape
    return (q.new_empty(q.shape, dtype=torch.bfloat16),
            q.new_empty((batch, heads, tokens), dtype=torch.float32))


@torch.library.register_fake("draftattn::quantize_fp8")
def _quantize_fp8(q, k, v):
    batch, tokens, heads, head_dim = q.shape
    blocks = -(-tokens // 128)
    e4m3 = torch.float8_e4m3fn
    return (q.new_empty(q.shape, dtype=e4m3), k.new_empty(k.shape, dtype=e4m3),
            v.new_empty((batch, heads, head_dim, blocks * 128), dtype=e4m3),
            q.new_empty((batch, heads, blocks), dtype=torch.float32),
            q.new_empty((batch, heads, blocks), dtype=torch.float32),
            q.new_empty((batch, heads), dtype=torch.float32))


@torch.library.register_fake("draftattn::mean_pool")
def _mean_pool(x, frames, height, width, region_h=8, region_w=16, text_len=0, text_first=False):
    layout = _layout(frames, height, width, region_h, region_w, text_len, text_first)
    return x.new_empty((x.shape[0], x.shape[2], layout.num_regions, x.shape[3]), dtype=torch.float32)


@torch.library.register_fake("draftattn::draft_select")
def _draft_select(q_pooled, k_pooled, rule="global", sparsity=0.9, top_p=0.9, text_blocks=0, text_first=False):
    batch, heads, regions, _ = q_pooled.shape
    blocks = regions + text_blocks
    return (q_pooled.new_empty((batch, heads, blocks, blocks), dtype=torch.int32),
            q_pooled.new_empty((batch, heads, blocks), dtype=torch.int32))


@torch.library.register_fake("draftattn::to_regions")
def _to_regions(x, frames, height, width, region_h=8, region_w=16, text_len=0, text_first=False):
    layout = _layout(frames, height, width, region_h, region_w, text_len, text_first)
    return x.new_empty((x.shape[0], layout.padded_tokens, x.shape[2], x.shape[3]))


@torch.library.register_fake("draftattn::from_regions")
def _from_regions(x, frames, height, width, region_h=8, region_w=16, text_len=0, text_first=False):
    layout = _layout(frames, height, width, region_h, region_w, text_len, text_first)
    return x.new_empty((x.shape[0], layout.tokens, x.shape[2], x.shape[3]))


@torch.library.register_fake("draftattn::to_regions_and_pool")
def _to_regions_and_pool(q, k, v, frames, height, width, region_h=8, region_w=16, text_len=0, text_first=False):
    regions = [_to_regions(t, frames, height, width, region_h, region_w, text_len, text_first) for t in (q, k, v)]
    pooled = [_mean_pool(t, frames, height, width, region_h, region_w, text_len, text_first) for t in (q, k)]
    return (*regions, *pooled)


@torch.library.register_fake("draftattn::to_regions_and_quantize_fp8")
def _to_regions_and_quantize_fp8(q, k, v, frames, height, width, region_h=8, region_w=16, text_len=0,
                                 text_first=False):
    regions = [_to_regions(t, frames, height, width, region_h, region_w, text_len, text_first) for t in (q, k, v)]
    pooled = [_mean_pool(t, frames, height, width, region_h, region_w, text_len, text_first) for t in (q, k)]
    return (*_quantize_fp8(*regions), *pooled)
