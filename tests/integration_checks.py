"""Shared pieces of the diffusers integration tests: one forward pass, the config that makes
every step and layer sparse, and the check that sparsity 0 reproduces the stock model."""
import torch

from draftattn_cuda.integration import DraftConfig, enable

# No dense steps and no dense layers: every self-attention call goes through draftattn.
SPARSE_EVERYWHERE = dict(dense_steps_fraction=0.0, dense_layers=())


@torch.no_grad()
def run(model, inputs):
    return model(**inputs).sample


def assert_sparsity_zero_matches_stock(model, inputs, forward=run):
    """`forward(model, inputs)` runs the model (default: keyword inputs, as `run`)."""
    stock = forward(model, inputs)
    enable(model, DraftConfig(sparsity=0.0, **SPARSE_EVERYWHERE))
    patched = forward(model, inputs)
    # Both bf16; SDPA and the reference round the attention output differently (bf16 ulp 2^-8).
    torch.testing.assert_close(patched, stock, atol=3e-2, rtol=3e-2)
    assert (patched - stock).abs().mean() < 3e-3
