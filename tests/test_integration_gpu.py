"""The diffusers integration on the GPU: bf16 models with the CUDA kernels, torch.compile(fullgraph=True)
over one transformer block with a draft processor, and CUDA-graph capture of a block.

Small random-weight models (head dim 128, a 3 x 24 x 40 patchified grid: partial regions at the
right edge, packed into edge blocks). Skips without CUDA or without a CUDA build of draftattn_cuda.
"""
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel  # noqa: E402

from draftattn_cuda.integration import DraftConfig, disable, enable, set_step  # noqa: E402
from integration_checks import run  # noqa: E402

pytestmark = pytest.mark.requires_cuda_build

GRID, TEXT_LEN, VALID_TEXT = (3, 24, 40), 150, (40, 150)


def wan_case():
    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=4,
                                  out_channels=4, text_dim=32, freq_dim=32, ffn_dim=256, num_layers=2,
                                  rope_max_seq_len=64)
    gen = torch.Generator().manual_seed(1)
    inputs = dict(hidden_states=torch.randn(2, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=gen),
                  timestep=torch.full((2,), 500), encoder_hidden_states=torch.randn(2, 8, 32, generator=gen))
    return model, inputs, lambda m: m.blocks[1]


def hunyuan_case():
    torch.manual_seed(0)
    model = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=128,
                                           num_layers=1, num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0,
                                           text_embed_dim=32, pooled_projection_dim=16, rope_axes_dim=(16, 56, 56),
                                           guidance_embeds=False)
    gen = torch.Generator().manual_seed(1)
    text_mask = (torch.arange(TEXT_LEN) < torch.tensor(VALID_TEXT).unsqueeze(1)).long()
    inputs = dict(hidden_states=torch.randn(2, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=gen),
                  timestep=torch.full((2,), 500), encoder_hidden_states=torch.randn(2, TEXT_LEN, 32, generator=gen),
                  encoder_attention_mask=text_mask, pooled_projections=torch.randn(2, 16, generator=gen))
    return model, inputs, lambda m: m.single_transformer_blocks[0]


CASES = {"wan": wan_case, "hunyuan": hunyuan_case}


def on_gpu(case):
    model, inputs, block_of = CASES[case]()
    model = model.to("cuda", torch.bfloat16).eval()
    inputs = {name: value.cuda().to(torch.bfloat16) if value.is_floating_point() else value.cuda()
              for name, value in inputs.items()}
    return model, inputs, block_of


@torch.no_grad()
def block_inputs(model, inputs, block):
    """The positional and keyword arguments the model passes to `block` (one full forward)."""
    captured = {}
    hook = block.register_forward_pre_hook(lambda m, args, kwargs: captured.update(args=args, kwargs=kwargs),
                                           with_kwargs=True)
    run(model, inputs)
    hook.remove()
    return captured["args"], captured["kwargs"]


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_model_at_sparsity_zero_matches_stock(case):
    model, inputs, _ = on_gpu(case)
    stock = run(model, inputs)
    enable(model, DraftConfig(sparsity=0.0, dense_steps_fraction=0.0, dense_layers=()))
    patched = run(model, inputs)
    torch.testing.assert_close(patched, stock, atol=3e-2, rtol=3e-2)
    assert (patched - stock).abs().mean() < 3e-3
    disable(model)
    assert torch.equal(run(model, inputs), stock)


@pytest.mark.parametrize("permute_once", [False, True], ids=["per_layer", "permute_once"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_block_fullgraph_matches_eager(case, permute_once):
    model, inputs, block_of = on_gpu(case)
    stats = enable(model, DraftConfig(sparsity=0.8, dense_layers=(), permute_once=permute_once))
    set_step(model, 3, 4)
    block = block_of(model)
    args, kwargs = block_inputs(model, inputs, block)
    with torch.no_grad():
        eager = as_tuple(block(*args, **kwargs))
        compiled = as_tuple(torch.compile(block, fullgraph=True)(*args, **kwargs))
    assert stats.calls and torch.all(stats.calls[-1][1] < 0.6)
    for got, want in zip(compiled, eager):
        torch.testing.assert_close(got, want, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("permute_once", [False, True], ids=["per_layer", "permute_once"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_block_captures_in_a_cuda_graph(case, permute_once):
    model, inputs, block_of = on_gpu(case)
    enable(model, DraftConfig(sparsity=0.8, dense_layers=(), permute_once=permute_once))
    set_step(model, 3, 4)
    block = block_of(model)
    args, kwargs = block_inputs(model, inputs, block)
    static_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: caches, workspaces
            block(*static_args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = as_tuple(block(*static_args, **kwargs))
        # Fresh inputs copied into the captured buffers; the replay must follow them.
        static_args[0].copy_(args[0] + 0.5 * torch.randn_like(args[0]))
        graph.replay()
        torch.cuda.synchronize()
        want = as_tuple(block(*static_args, **kwargs))
    for got, expected in zip(captured, want):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)
