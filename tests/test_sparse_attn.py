"""sparse_attn equals dense fp32 attention under the token mask its block lists imply."""
import pytest
import torch

import draftattn_cuda as da
from attention_math import dense_attention, random_block_lists, random_qkv, token_mask_from_lists

GRIDS = [  # frames, height, width, text_len, text_first
    (2, 16, 32, 0, False),
    (2, 30, 52, 0, False),
    (1, 45, 80, 0, False),
    (2, 30, 52, 200, True),
    (1, 17, 20, 77, False),
]


@pytest.mark.parametrize("grid", GRIDS, ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matches_masked_dense_attention(grid, dtype, rng):
    frames, height, width, text_len, text_first = grid
    layout = da.VideoLayout(frames, height, width, text_len=text_len, text_first=text_first)
    heads, head_dim = 2, 64 if frames > 1 else 128
    q, k, v = random_qkv((1, layout.padded_tokens, heads, head_dim), dtype, rng)
    kv_indices, kv_counts = random_block_lists(1, heads, layout.num_blocks, rng)
    block_lens = layout.block_lens()

    out, lse = da.sparse_attn(q, k, v, kv_indices, kv_counts, block_lens)

    mask = token_mask_from_lists(kv_indices, kv_counts, block_lens, layout.padded_tokens)
    want_out, want_lse = dense_attention(q, k, v, mask)
    assert out.dtype == dtype and lse.dtype == torch.float32
    torch.testing.assert_close(out.float(), want_out, atol=2e-2 if dtype == torch.bfloat16 else 2e-3, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)
    empty_rows = kv_counts[0, 0, 0] == 0
    assert empty_rows and torch.all(out[:, :128] == 0) and torch.all(lse[:, :, :128] == float("-inf"))
    padding = layout.region_index() < 0
    assert torch.all(out[:, padding] == 0) and torch.all(lse[:, :, padding] == float("-inf"))


def test_tokens_not_multiple_of_block_and_custom_scale(rng):
    tokens, heads = 300, 3
    q, k, v = random_qkv((2, tokens, heads, 64), torch.bfloat16, rng)
    kv_indices, kv_counts = random_block_lists(2, heads, 3, rng, density=0.6)
    out, lse = da.sparse_attn(q, k, v, kv_indices, kv_counts, scale=0.3)
    want_out, want_lse = dense_attention(q, k, v, token_mask_from_lists(kv_indices, kv_counts, None, tokens), 0.3)
    torch.testing.assert_close(out.float(), want_out, atol=2e-2, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_per_batch_block_lens(dtype, rng):
    # Per-sample lengths (text padding): padded keys drop out, padded query rows get 0, and a
    # block with no valid rows contributes nothing.
    batch, tokens, heads = 3, 600, 2
    num_blocks = 5
    q, k, v = random_qkv((batch, tokens, heads, 64), dtype, rng)
    kv_indices, kv_counts = random_block_lists(batch, heads, num_blocks, rng, density=0.7)
    block_lens = torch.randint(0, 129, (batch, num_blocks), generator=rng, dtype=torch.int32)
    block_lens[:, -1].clamp_(max=tokens - 4 * 128)
    block_lens[0, 2] = 0
    out, lse = da.sparse_attn(q, k, v, kv_indices, kv_counts, block_lens)
    want_out, want_lse = dense_attention(q, k, v, token_mask_from_lists(kv_indices, kv_counts, block_lens, tokens))
    torch.testing.assert_close(out.float(), want_out, atol=2e-2 if dtype == torch.bfloat16 else 2e-3, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)
    assert torch.all(out[0, 256:384] == 0) and torch.all(lse[0, :, 256:384] == float("-inf"))


def test_full_lists_equal_dense_attention(rng):
    tokens, heads, num_blocks = 500, 2, 4
    q, k, v = random_qkv((1, tokens, heads, 128), torch.float16, rng)
    kv_indices = torch.arange(num_blocks, dtype=torch.int32).expand(1, heads, num_blocks, num_blocks).contiguous()
    kv_counts = torch.full((1, heads, num_blocks), num_blocks, dtype=torch.int32)
    out, lse = da.sparse_attn(q, k, v, kv_indices, kv_counts)
    want_out, want_lse = dense_attention(q, k, v)
    torch.testing.assert_close(out.float(), want_out, atol=2e-3, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)


def test_non_contiguous_heads_view(rng):
    q, k, v = random_qkv((1, 2, 256, 64), torch.bfloat16, rng)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    kv_indices, kv_counts = random_block_lists(1, 2, 2, rng, density=0.5)
    out, _ = da.sparse_attn(q, k, v, kv_indices, kv_counts)
    want, _ = dense_attention(q, k, v, token_mask_from_lists(kv_indices, kv_counts, None, 256))
    torch.testing.assert_close(out.float(), want, atol=2e-2, rtol=0)
