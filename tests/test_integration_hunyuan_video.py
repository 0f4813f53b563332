"""Draft attention inside a tiny random-weight diffusers HunyuanVideoTransformer3DModel (CPU).

Two dual-stream and two single-stream blocks; a 3 x 10 x 20 patchified grid (3 full regions and
2 edge blocks of packed partial regions) followed by 150 text tokens (two text blocks). The two
samples of a guidance batch have 40 and 150 valid text tokens, so the first sample's second
text block is entirely padding: padded text keys must be skipped exactly as the model's
attention mask skips them.
"""
import pytest
import torch

pytest.importorskip("diffusers")
import diffusers.models.transformers.transformer_hunyuan_video as diffusers_hunyuan  # noqa: E402
from diffusers import HunyuanVideoTransformer3DModel  # noqa: E402

from draftattn_cuda import VideoLayout, draft_attention  # noqa: E402
from draftattn_cuda.integration import DraftConfig, disable, enable, set_step  # noqa: E402
from integration_checks import SPARSE_EVERYWHERE, assert_sparsity_zero_matches_stock, run  # noqa: E402

GRID, TEXT_LEN, VALID_TEXT = (3, 10, 20), 150, (40, 150)


def tiny_hunyuan(**config):
    torch.manual_seed(0)
    model = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                           attention_head_dim=64, num_layers=2, num_single_layers=2,
                                           num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=32,
                                           pooled_projection_dim=16, rope_axes_dim=(16, 24, 24),
                                           guidance_embeds=False, **config)
    return model.to(torch.bfloat16).eval()


def model_inputs(valid_text=VALID_TEXT, seed=1):
    gen = torch.Generator().manual_seed(seed)
    batch = len(valid_text)
    latent = torch.randn(batch, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=gen).to(torch.bfloat16)
    text = torch.randn(batch, TEXT_LEN, 32, generator=gen).to(torch.bfloat16)
    text_mask = (torch.arange(TEXT_LEN) < torch.tensor(valid_text).unsqueeze(1)).long()
    return dict(hidden_states=latent, timestep=torch.full((batch,), 500), encoder_hidden_states=text,
                encoder_attention_mask=text_mask, pooled_projections=torch.randn(batch, 16, generator=gen).bfloat16())


def sample(inputs, index):
    return {name: value[index:index + 1] for name, value in inputs.items()}


def test_sparsity_zero_matches_stock_model_with_padded_text():
    assert_sparsity_zero_matches_stock(tiny_hunyuan(), model_inputs())


@pytest.mark.parametrize("block", ["transformer_blocks", "single_transformer_blocks"])
def test_attention_layer_at_sparsity_zero_skips_padded_text_keys(block):
    model, inputs = tiny_hunyuan(), model_inputs()
    enable(model, DraftConfig(sparsity=0.0, **SPARSE_EVERYWHERE))
    run(model, inputs)  # records the latent grid
    attn = getattr(model, block)[0].attn
    gen = torch.Generator().manual_seed(2)
    video = torch.randn(2, 600, 128, generator=gen).bfloat16()
    text = 3 * torch.randn(2, TEXT_LEN, 128, generator=gen).bfloat16()
    rotary = model.rope(inputs["hidden_states"])
    valid = torch.arange(600 + TEXT_LEN) < 600 + torch.tensor(VALID_TEXT).unsqueeze(1)
    masked, unmasked = valid[:, None, None, :], torch.ones_like(valid)[:, None, None, :]

    ours = attn.processor(attn, video, text, masked, rotary)
    stock = attn.processor.original(attn, video, text, masked, rotary)
    stock_unmasked = attn.processor.original(attn, video, text, unmasked, rotary)
    # Compared where the stock model's result is used: video rows and valid text rows.
    for got, want, other in zip(ours, stock, stock_unmasked):
        keep = slice(None) if got.shape[1] == 600 else slice(0, VALID_TEXT[0])
        assert (got[0, keep] - want[0, keep]).abs().max() < 1e-2
        assert (other[0, keep] - want[0, keep]).abs().max() > 5e-2  # the padded keys would matter
        torch.testing.assert_close(got[1], want[1], atol=1e-2, rtol=0)


def test_sparse_model_matches_stock_math_with_draft_attention(monkeypatch):
    model, inputs = tiny_hunyuan(), model_inputs()
    stats = enable(model, DraftConfig(sparsity=0.9, **SPARSE_EVERYWHERE))
    patched = run(model, inputs)
    assert [layer for layer, _ in stats.calls] == [0, 1, 2, 3] and stats.calls[0][1].shape == (2, 2)
    assert stats.mean_density().item() < 0.5
    disable(model)

    layout = VideoLayout(*GRID, text_len=TEXT_LEN)

    def draft_with_key_mask(query, key, value, attn_mask=None, **kwargs):
        text_lens = attn_mask[:, 0, 0, -TEXT_LEN:].sum(-1)
        return draft_attention(query, key, value, layout, sparsity=0.9, text_lens=text_lens)

    # The reference: the stock processor's projections, norms and rotary embedding with only its
    # attention call replaced by draft_attention, text lengths read from the model's own mask.
    monkeypatch.setattr(diffusers_hunyuan, "dispatch_attention_fn", draft_with_key_mask)
    torch.testing.assert_close(patched, run(model, inputs), atol=0, rtol=0)


def test_guidance_batch_with_different_text_lengths_equals_separate_runs():
    model, inputs = tiny_hunyuan(), model_inputs()
    enable(model, DraftConfig(sparsity=0.8, **SPARSE_EVERYWHERE))
    together = run(model, inputs)
    separate = torch.cat([run(model, sample(inputs, i)) for i in range(2)])
    torch.testing.assert_close(together, separate, atol=2e-2, rtol=2e-2)
    assert (together - separate).abs().mean() < 2e-3


def test_default_dense_layers_schedule_and_disable():
    model, inputs = tiny_hunyuan(), model_inputs()
    modules = [b.attn for b in model.transformer_blocks] + [b.attn for b in model.single_transformer_blocks]
    originals = [m.processor for m in modules]
    stock = run(model, inputs)
    stats = enable(model, DraftConfig(sparsity=0.9))  # the paper: dual-stream blocks 0 and 1 dense
    assert [m.processor is o for m, o in zip(modules, originals)] == [True, True, False, False]
    assert torch.equal(run(model, inputs), stock) and stats.calls == []  # step 0 of unknown count: dense
    set_step(model, 1, 8)  # 25% of 8 steps: steps 0 and 1 dense
    assert torch.equal(run(model, inputs), stock) and stats.calls == []
    set_step(model, 2, 8)
    assert not torch.equal(run(model, inputs), stock)
    assert [layer for layer, _ in stats.calls] == [2, 3]
    disable(model)
    assert all(m.processor is o for m, o in zip(modules, originals))
    assert torch.equal(run(model, inputs), stock)


def test_unknown_mask_form_falls_back_to_stock_processor():
    model = tiny_hunyuan()
    enable(model, DraftConfig(sparsity=0.9, **SPARSE_EVERYWHERE))
    attn = model.single_transformer_blocks[0].attn
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(1, 600, 128, generator=gen).bfloat16()
    text = torch.randn(1, TEXT_LEN, 128, generator=gen).bfloat16()
    full_mask = torch.ones(1, 1, 750, 750, dtype=torch.bool)  # a query x key mask: not a key mask
    ours = attn.processor(attn, hidden, text, full_mask)
    stock = attn.processor.original(attn, hidden, text, full_mask)
    assert all(torch.equal(a, b) for a, b in zip(ours, stock))


@pytest.mark.parametrize("text_first", [False, True])
def test_draft_attention_text_lens_equals_dense_attention_under_the_key_mask(text_first, rng):
    from attention_math import dense_attention, random_qkv
    layout = VideoLayout(2, 10, 20, text_len=TEXT_LEN, text_first=text_first)
    q, k, v = random_qkv((3, layout.tokens, 2, 64), torch.bfloat16, rng)
    text_lens = torch.tensor([0, 40, 150])
    out, stats = draft_attention(q, k, v, layout, sparsity=0.0, text_lens=text_lens, return_stats=True)
    video = torch.ones(layout.video_tokens, dtype=torch.bool)
    rows = []
    for valid in text_lens.tolist():
        text = torch.arange(TEXT_LEN) < valid
        rows.append(torch.cat([text, video]) if text_first else torch.cat([video, text]))
    valid_tokens = torch.stack(rows)
    key_mask = valid_tokens[:, None, None, :].expand(3, 2, layout.tokens, layout.tokens)
    want, _ = dense_attention(q, k, v, key_mask)
    torch.testing.assert_close(out.float()[valid_tokens], want[valid_tokens], atol=2e-2, rtol=0)
    assert torch.all(out[~valid_tokens] == 0)  # padded text query rows
    assert torch.all(stats["density"] == 1.0)
    assert stats["block_lens"].shape == (3, layout.num_blocks)


def test_draft_attention_regions_equals_draft_attention(rng):
    from attention_math import random_qkv
    from draftattn_cuda import draft_attention_regions
    layout = VideoLayout(2, 10, 20, text_len=TEXT_LEN)
    q, k, v = random_qkv((2, layout.tokens, 2, 64), torch.bfloat16, rng)
    text_lens = torch.tensor(VALID_TEXT)
    want, want_stats = draft_attention(q, k, v, layout, sparsity=0.7, text_lens=text_lens, return_stats=True)
    rows = layout.num_regions * 128 + TEXT_LEN  # text follows the video blocks unpadded
    q_r, k_r, v_r = (layout.to_regions(t)[:, :rows] for t in (q, k, v))
    out, stats = draft_attention_regions(q_r, k_r, v_r, layout, sparsity=0.7, text_lens=text_lens, return_stats=True)
    assert torch.equal(stats["kv_indices"], want_stats["kv_indices"])
    pad = torch.zeros(2, layout.padded_tokens - rows, 2, 64, dtype=out.dtype)
    # Same lists; the reference's fp32 matmuls over a shorter sequence may round a value 1 bf16 ulp apart.
    torch.testing.assert_close(layout.from_regions(torch.cat([out, pad], 1)), want, atol=1e-3, rtol=1e-2)


@pytest.mark.parametrize("text_lens, message", [
    (torch.tensor([1.0, 2.0]), "integer tensor"), (torch.tensor([1, 2, 3]), r"shape \(batch,\)"),
    ([40, 150], "integer tensor"),
])
def test_bad_text_lens_are_named(text_lens, message):
    layout = VideoLayout(2, 10, 20, text_len=TEXT_LEN)
    q = torch.zeros(2, layout.tokens, 2, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=f"text_lens must be an {message}|text_lens must have {message}"):
        draft_attention(q, q, q, layout, text_lens=text_lens)
    with pytest.raises(ValueError, match="text_lens needs a layout with text"):
        draft_attention(q[:, :400], q[:, :400], q[:, :400], VideoLayout(2, 10, 20), text_lens=torch.tensor([1, 2]))
