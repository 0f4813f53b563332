"""Draft attention inside a tiny random-weight diffusers CogVideoXTransformer3DModel (CPU).

20 text tokens come first (one partial text block), then a 3 x 10 x 20 patchified video grid
(3 full regions; the partial ones, 216 tokens, packed into 2 edge blocks); head dim 64 as in
CogVideoX-5B; rotary embeddings on.
"""
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import CogVideoXTransformer3DModel  # noqa: E402
from diffusers.models.embeddings import get_3d_rotary_pos_embed  # noqa: E402

from draftattn_cuda import VideoLayout, draft_attention  # noqa: E402
from draftattn_cuda.integration import DraftConfig, disable, enable, set_step  # noqa: E402
from integration_checks import SPARSE_EVERYWHERE, assert_sparsity_zero_matches_stock, run  # noqa: E402

GRID, TEXT_LEN = (3, 10, 20), 20


def tiny_cogvideox():
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4,
                                        time_embed_dim=32, text_embed_dim=32, num_layers=2, sample_width=40,
                                        sample_height=20, sample_frames=9, max_text_seq_length=TEXT_LEN,
                                        use_rotary_positional_embeddings=True)
    return model.to(torch.bfloat16).eval()


def model_inputs(batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, GRID[0], 4, 2 * GRID[1], 2 * GRID[2], generator=gen).to(torch.bfloat16)
    text = torch.randn(batch, TEXT_LEN, 32, generator=gen).to(torch.bfloat16)
    rotary = get_3d_rotary_pos_embed(64, ((0, 0), GRID[1:]), GRID[1:], GRID[0])
    return dict(hidden_states=latent, encoder_hidden_states=text, timestep=torch.full((batch,), 500),
                image_rotary_emb=rotary)


def test_sparsity_zero_matches_stock_model():
    assert_sparsity_zero_matches_stock(tiny_cogvideox(), model_inputs())


def test_sparse_model_matches_stock_math_with_draft_attention(monkeypatch):
    model, inputs = tiny_cogvideox(), model_inputs()
    stats = enable(model, DraftConfig(sparsity=0.9, **SPARSE_EVERYWHERE))
    patched = run(model, inputs)
    assert stats.calls[0][1].shape == (2, 2) and stats.mean_density().item() < 0.5
    disable(model)

    layout = VideoLayout(*GRID, text_len=TEXT_LEN, text_first=True)

    def draft_on_heads_first(query, key, value, **kwargs):
        # The stock processor's SDPA call takes (batch, heads, tokens, head_dim).
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))
        return draft_attention(q, k, v, layout, sparsity=0.9).transpose(1, 2)

    # The reference: the stock processor's own math with only the attention call replaced.
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", draft_on_heads_first)
    torch.testing.assert_close(patched, run(model, inputs), atol=0, rtol=0)


def test_schedule_dense_layer_and_disable():
    model, inputs = tiny_cogvideox(), model_inputs(batch=1)
    originals = [block.attn1.processor for block in model.transformer_blocks]
    stock = run(model, inputs)
    stats = enable(model, DraftConfig(sparsity=0.9))  # CogVideoX default: block 0 dense
    assert model.transformer_blocks[0].attn1.processor is originals[0]
    assert model.transformer_blocks[1].attn1.processor is not originals[1]
    assert torch.equal(run(model, inputs), stock) and stats.calls == []  # step 0: dense
    set_step(model, 1, 4)
    assert not torch.equal(run(model, inputs), stock)
    assert [layer for layer, _ in stats.calls] == [1]
    disable(model)
    assert all(block.attn1.processor is original for block, original in zip(model.transformer_blocks, originals))
    assert torch.equal(run(model, inputs), stock)
