"""draft_attention end to end: exact at sparsity 0, consistent with its own block lists, compilable."""
import pytest
import torch

import draftattn_cuda as da
from attention_math import dense_attention, random_qkv, token_mask_from_lists


@pytest.mark.parametrize("spec", [(2, 16, 32, 0, False), (2, 30, 52, 100, False), (1, 20, 40, 130, True)], ids=str)
@pytest.mark.parametrize("rule", ["global", "topk"])
def test_sparsity_zero_equals_dense_attention(spec, rule, rng):
    frames, height, width, text_len, text_first = spec
    layout = da.VideoLayout(frames, height, width, text_len=text_len, text_first=text_first)
    q, k, v = random_qkv((1, layout.tokens, 2, 64), torch.bfloat16, rng)
    out, stats = da.draft_attention(q, k, v, layout, sparsity=0.0, rule=rule, return_stats=True)
    want, _ = dense_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.float(), want, atol=2e-2, rtol=0)
    assert torch.all(stats["density"] == 1.0)


@pytest.mark.parametrize("rule", ["global", "topk", "topp"])
def test_sparse_output_equals_masked_dense_in_model_order(rule, rng):
    layout = da.VideoLayout(2, 30, 52, text_len=77)
    q, k, v = random_qkv((1, layout.tokens, 2, 64), torch.float16, rng)
    out, stats = da.draft_attention(q, k, v, layout, sparsity=0.8, rule=rule, top_p=0.5, scale=0.1,
                                    return_stats=True)
    region_mask = token_mask_from_lists(stats["kv_indices"], stats["kv_counts"], layout.block_lens(),
                                        layout.padded_tokens)
    rows = layout.model_index()
    mask = region_mask[:, :, rows][:, :, :, rows]
    want, want_lse = dense_attention(q, k, v, mask, scale=0.1)
    torch.testing.assert_close(out.float(), want, atol=2e-3, rtol=0)
    torch.testing.assert_close(stats["lse"][:, :, rows], want_lse, atol=1e-5, rtol=1e-5)
    density = mask.sum((-1, -2)).double() / layout.tokens**2
    torch.testing.assert_close(stats["density"], density)
    assert torch.all(density < 0.95)


def test_compiles_fullgraph_with_fake_kernels(rng):
    layout = da.VideoLayout(2, 16, 20, text_len=50, text_first=True)
    q, k, v = random_qkv((1, layout.tokens, 2, 64), torch.bfloat16, rng)
    eager = da.draft_attention(q, k, v, layout, sparsity=0.5)
    compiled = torch.compile(da.draft_attention, fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v, layout, sparsity=0.5), eager, atol=0, rtol=0)
