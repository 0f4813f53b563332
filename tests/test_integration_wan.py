"""Draft attention inside a tiny random-weight diffusers WanTransformer3DModel (CPU reference ops).

The latent 3 x 20 x 40 patchifies to a 3 x 10 x 20 token grid: 12 draft regions per video, all
of them partial at the bottom or right edge, so the integration is tested off the 8 x 16 grid.
"""
import pytest
import torch

pytest.importorskip("diffusers")
import diffusers.models.transformers.transformer_wan as diffusers_wan  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402

from draftattn_cuda import VideoLayout, draft_attention  # noqa: E402
from draftattn_cuda.integration import DraftConfig, denoising_step_callback, disable, enable, set_step  # noqa: E402
from integration_checks import SPARSE_EVERYWHERE, assert_sparsity_zero_matches_stock  # noqa: E402

GRID = (3, 10, 20)


def tiny_wan(num_layers=2):
    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=4,
                                  out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=num_layers,
                                  rope_max_seq_len=64)
    return model.to(torch.bfloat16).eval()


def model_inputs(batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=gen).to(torch.bfloat16)
    text = torch.randn(batch, 8, 32, generator=gen).to(torch.bfloat16)
    return latent, torch.full((batch,), 500), text


@torch.no_grad()
def run(model, inputs):
    return model(*inputs).sample


class CountingProcessor:
    """Wraps a stock processor and counts its calls (the dense path)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_sparsity_zero_matches_stock_model():
    assert_sparsity_zero_matches_stock(tiny_wan(), model_inputs(), forward=run)


def test_sparse_model_matches_stock_math_with_draft_attention(monkeypatch):
    model, inputs = tiny_wan(), model_inputs()
    enable(model, DraftConfig(sparsity=0.9, **SPARSE_EVERYWHERE))
    patched = run(model, inputs)
    disable(model)

    layout = VideoLayout(*GRID)
    dense = diffusers_wan.dispatch_attention_fn

    def draft_for_self_attention(query, key, value, **kwargs):
        if key.shape[1] != layout.tokens:
            return dense(query, key, value, **kwargs)
        return draft_attention(query, key, value, layout, sparsity=0.9)

    # The reference: diffusers' own projections, norms and rotary embedding, with only the
    # attention call replaced by draft_attention on the same q, k, v.
    monkeypatch.setattr(diffusers_wan, "dispatch_attention_fn", draft_for_self_attention)
    torch.testing.assert_close(patched, run(model, inputs), atol=0, rtol=0)


def test_guidance_batch_selects_blocks_per_sample(monkeypatch):
    model = tiny_wan()
    cond, uncond = model_inputs(batch=1, seed=1), model_inputs(batch=1, seed=2)
    batched = tuple(torch.cat(pair) for pair in zip(cond, uncond))
    block_lists = spy_on_block_lists(monkeypatch)
    stats = enable(model, DraftConfig(sparsity=0.9, **SPARSE_EVERYWHERE))
    together = run(model, batched)
    assert stats.calls[0][1].shape == (2, 2)  # density per (sample, head)
    separate = torch.cat([run(model, cond), run(model, uncond)])
    torch.testing.assert_close(together, separate, atol=2e-2, rtol=2e-2)

    batched_lists, cond_lists, uncond_lists = block_lists[0], block_lists[2], block_lists[4]  # layer 0 of each run
    assert not torch.equal(batched_lists[0], batched_lists[1])  # the two samples chose differently
    assert torch.equal(batched_lists[0], cond_lists[0]) and torch.equal(batched_lists[1], uncond_lists[0])


def spy_on_block_lists(monkeypatch):
    """Records kv_indices of every draft_attention call the processors make."""
    import draftattn_cuda.integration.processor as processor_module
    recorded, real = [], processor_module.draft_attention

    def recording(*args, **kwargs):
        out, stats = real(*args, **kwargs)
        recorded.append(stats["kv_indices"])
        return out, stats

    monkeypatch.setattr(processor_module, "draft_attention", recording)
    return recorded


def test_schedule_keeps_first_steps_and_dense_layers_on_the_stock_path():
    model, inputs = tiny_wan(), model_inputs(batch=1)
    counters = [CountingProcessor(block.attn1.processor) for block in model.blocks]
    for block, counter in zip(model.blocks, counters):
        block.attn1.set_processor(counter)
    stats = enable(model, DraftConfig(sparsity=0.5, dense_steps_fraction=0.25))  # Wan default: layer 0 dense

    run(model, inputs)  # before any set_step: step 0, dense
    assert [c.calls for c in counters] == [1, 1] and stats.calls == []

    callback = denoising_step_callback(model)
    pipeline = type("Pipeline", (), {"num_timesteps": 4})()
    assert callback(pipeline, 0, 999, {"latents": 1}) == {"latents": 1}  # end of step 0 -> step 1
    run(model, inputs)
    assert [c.calls for c in counters] == [2, 1]
    assert [layer for layer, _ in stats.calls] == [1]

    set_step(model, 3, 4)
    run(model, inputs)
    assert [c.calls for c in counters] == [3, 1] and stats.step == 3 and len(stats.calls) == 1
    assert 0 < stats.mean_density().item() < 1

    callback(pipeline, 3, 0, {})  # the last step wraps to 0: the next generation starts dense
    run(model, inputs)
    assert [c.calls for c in counters] == [4, 2]


def test_disable_restores_processors_and_output():
    model, inputs = tiny_wan(), model_inputs()
    originals = [(block.attn1.processor, block.attn2.processor) for block in model.blocks]
    stock = run(model, inputs)
    enable(model, DraftConfig(sparsity=0.9, dense_steps_fraction=0.0))
    assert model.blocks[0].attn1.processor is originals[0][0]  # layer 0 stays dense by default
    assert model.blocks[1].attn1.processor is not originals[1][0]
    assert all(block.attn2.processor is pair[1] for block, pair in zip(model.blocks, originals))
    assert not torch.equal(run(model, inputs), stock)
    enable(model, DraftConfig(sparsity=0.5, dense_steps_fraction=0.0))  # re-enabling stacks nothing
    disable(model)
    assert [(block.attn1.processor, block.attn2.processor) for block in model.blocks] == originals
    assert all(a is b for block, pair in zip(model.blocks, originals)
               for a, b in zip((block.attn1.processor, block.attn2.processor), pair))
    assert torch.equal(run(model, inputs), stock)
    assert not model._forward_pre_hooks
    with pytest.raises(ValueError, match="not enabled"):
        disable(model)


def test_fp8_precision_runs_close_to_native():
    model, inputs = tiny_wan(), model_inputs(batch=1)
    enable(model, DraftConfig(sparsity=0.5, **SPARSE_EVERYWHERE))
    native = run(model, inputs)
    enable(model, DraftConfig(sparsity=0.5, precision="fp8", **SPARSE_EVERYWHERE))
    fp8 = run(model, inputs)
    assert fp8.dtype == native.dtype and torch.isfinite(fp8).all()
    assert (fp8 - native).float().norm() / native.float().norm() < 0.1


@pytest.mark.parametrize("field, value", [
    ("sparsity", 1.5), ("sparsity", "0.9"), ("rule", "top-k"), ("top_p", 0.0), ("dense_steps_fraction", -0.1),
    ("dense_layers", (0, -1)), ("dense_layers", 3), ("region", (8, 8)), ("region", (16, 8, 1)),
    ("precision", "fp16"),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"DraftConfig.{field} "):
        DraftConfig(**{field: value})


def test_bad_enable_arguments():
    model = tiny_wan()
    with pytest.raises(ValueError, match="dense_layers"):
        enable(model, DraftConfig(dense_layers=(0, 2)))
    with pytest.raises(ValueError, match="DraftConfig"):
        enable(model, {"sparsity": 0.9})
    with pytest.raises(ValueError, match="WanTransformer3DModel"):
        enable(torch.nn.Linear(2, 2))
    enable(model)
    with pytest.raises(ValueError, match="step"):
        set_step(model, 4, 4)
