"""DraftConfig.permute_once on tiny random-weight diffusers models of each family (CPU).

Permuting once per forward must give the result of permuting in every layer: the same block
lists (so the same kept densities) and the same output up to bf16 rounding of per-token ops that
now run on rows in another order.
"""
import pytest
import torch

pytest.importorskip("diffusers")
import test_integration_cogvideox as cogvideox  # noqa: E402
import test_integration_hunyuan_video as hunyuan  # noqa: E402
import test_integration_wan as wan  # noqa: E402

import draftattn_cuda.integration.processor as processor_module  # noqa: E402
from draftattn_cuda.integration import DraftConfig, disable, enable, set_step  # noqa: E402
from integration_checks import run  # noqa: E402

FAMILIES = {
    "wan": (wan.tiny_wan, lambda: dict(zip(("hidden_states", "timestep", "encoder_hidden_states"),
                                           wan.model_inputs()))),
    "cogvideox": (cogvideox.tiny_cogvideox, cogvideox.model_inputs),
    "hunyuan": (hunyuan.tiny_hunyuan, hunyuan.model_inputs),
}


def run_both_ways(model, inputs, **config):
    """Outputs and per-call densities with per-layer permutation, then with permute_once."""
    results = []
    for permute_once in (False, True):
        stats = enable(model, DraftConfig(permute_once=permute_once, **config))
        set_step(model, 3, 4)
        out = run(model, inputs)
        results.append((out, [(layer, density.clone()) for layer, density in stats.calls]))
        disable(model)
    return results


def assert_same_result(per_layer, once):
    (out_layer, calls_layer), (out_once, calls_once) = per_layer, once
    assert [layer for layer, _ in calls_once] == [layer for layer, _ in calls_layer]
    for (_, density_layer), (_, density_once) in zip(calls_layer, calls_once):
        torch.testing.assert_close(density_once, density_layer, atol=0, rtol=0)
    torch.testing.assert_close(out_once, out_layer, atol=3e-2, rtol=3e-2)
    assert (out_once - out_layer).abs().mean() < 3e-3


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_permute_once_equals_per_layer_permutation(family):
    make_model, make_inputs = FAMILIES[family]
    model, inputs = make_model(), make_inputs()
    per_layer, once = run_both_ways(model, inputs, sparsity=0.8, dense_steps_fraction=0.25)  # default dense layers
    assert len(per_layer[1]) > 0 and per_layer[1][0][1].mean() < 0.6
    assert_same_result(per_layer, once)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_permute_once_dense_step_equals_stock_model(family):
    make_model, make_inputs = FAMILIES[family]
    model, inputs = make_model(), make_inputs()
    stock = run(model, inputs)
    stats = enable(model, DraftConfig(permute_once=True))  # step 0: dense, through our kernel with all blocks
    dense = run(model, inputs)
    assert stats.calls == []
    torch.testing.assert_close(dense, stock, atol=3e-2, rtol=3e-2)
    assert (dense - stock).abs().mean() < 3e-3


def test_permute_once_never_permutes_inside_a_layer(monkeypatch):
    model, inputs = hunyuan.tiny_hunyuan(), hunyuan.model_inputs()
    calls = {"draft_attention": 0, "draft_attention_regions": 0}
    for name in calls:
        monkeypatch.setattr(processor_module, name, counting(getattr(processor_module, name), calls, name))
    enable(model, DraftConfig(permute_once=True, dense_steps_fraction=0.0))
    run(model, inputs)
    assert calls == {"draft_attention": 0, "draft_attention_regions": 4}  # 2 dense + 2 sparse layers


def counting(function, calls, name):
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)
    return wrapper


def test_wan22_per_token_timesteps_are_permuted_too():
    model = wan.tiny_wan()
    latent, _, text = wan.model_inputs()
    gen = torch.Generator().manual_seed(5)
    tokens = wan.GRID[0] * wan.GRID[1] * wan.GRID[2]
    timestep = torch.randint(0, 1000, (2, tokens), generator=gen)  # Wan2.2 TI2V: one timestep per token
    inputs = dict(hidden_states=latent, timestep=timestep, encoder_hidden_states=text)
    per_layer, once = run_both_ways(model, inputs, sparsity=0.8, dense_steps_fraction=0.0, dense_layers=())
    assert_same_result(per_layer, once)


def test_cogvideox_without_rotary_zeroes_padding_rows_for_pooling():
    torch.manual_seed(0)
    model = cogvideox.CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4, time_embed_dim=32,
        text_embed_dim=32, num_layers=2, sample_width=40, sample_height=20, sample_frames=9,
        max_text_seq_length=cogvideox.TEXT_LEN, use_rotary_positional_embeddings=False).to(torch.bfloat16).eval()
    inputs = {**cogvideox.model_inputs(), "image_rotary_emb": None}
    per_layer, once = run_both_ways(model, inputs, sparsity=0.8, dense_steps_fraction=0.0, dense_layers=())
    assert_same_result(per_layer, once)


def test_disable_after_permute_once_restores_the_stock_model():
    model, inputs = wan.tiny_wan(), FAMILIES["wan"][1]()
    processors = [block.attn1.processor for block in model.blocks]
    stock = run(model, inputs)
    enable(model, DraftConfig(permute_once=True, sparsity=0.9, dense_steps_fraction=0.0))
    assert all(block.attn1.processor is not p for block, p in zip(model.blocks, processors))  # dense layer 0 too
    run(model, inputs)
    disable(model)
    assert all(block.attn1.processor is p for block, p in zip(model.blocks, processors))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(run(model, inputs), stock)


def test_unsupported_variant_names_the_option_and_changes_nothing():
    model = hunyuan.tiny_hunyuan(image_condition_type="token_replace")
    processors = list(model.attn_processors.values())
    with pytest.raises(ValueError, match="DraftConfig.permute_once.*token_replace"):
        enable(model, DraftConfig(permute_once=True))
    assert all(a is b for a, b in zip(model.attn_processors.values(), processors))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_permute_once_must_be_a_bool():
    with pytest.raises(ValueError, match="DraftConfig.permute_once "):
        DraftConfig(permute_once=1)
