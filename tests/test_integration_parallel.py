"""Draft attention under diffusers' Ulysses context parallelism, 2 processes against 1.

A tiny random-weight WanTransformer3DModel runs with our processors in one process, then in two
spawned processes under `enable_parallelism(ContextParallelConfig(ulysses_degree=2))`; rank 0's
output (diffusers gathers the sequence at proj_out) must match. Each rank drafts its own heads over
the whole sequence, so at sparsity 0.5 the block choice is the single process's. Runs on the CPU
with gloo and, given 2 GPUs and the CUDA build, on CUDA with NCCL. An uneven split (ulysses_anything)
runs the model on NCCL only: diffusers gathers its output with an uneven all_gather, which gloo
refuses; on gloo the exchange itself is checked with an uneven split.
"""
import datetime
import logging
import os
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("diffusers")
from diffusers import ContextParallelConfig, HunyuanVideoTransformer3DModel, WanTransformer3DModel  # noqa: E402

import draftattn_cuda  # noqa: E402
from draftattn_cuda.integration import DraftConfig, enable  # noqa: E402
from integration_checks import SPARSE_EVERYWHERE  # noqa: E402
from draftattn_cuda.integration.ulysses import (UlyssesGroup, gather_sequence, scatter_sequence,  # noqa: E402
                                                 sequence_split, ulysses_group_of)

# (frames, height, width) after patchify: 400 tokens split evenly; 105 tokens need ulysses_anything.
EVEN_GRID, UNEVEN_GRID = (2, 10, 20), (3, 5, 7)
SPARSITIES = (0.0, 0.5)


def tiny_wan(dtype, device):
    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64, in_channels=4,
                                  out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
                                  rope_max_seq_len=64)
    return model.to(device=device, dtype=dtype).eval()


def model_inputs(grid, dtype, device):
    gen = torch.Generator().manual_seed(1)
    latent = torch.randn(2, 4, grid[0], 2 * grid[1], 2 * grid[2], generator=gen)
    text = torch.randn(2, 8, 32, generator=gen)
    # return_dict=False: diffusers' context-parallel hook on the model only passes tensors through.
    return dict(hidden_states=latent.to(device, dtype), timestep=torch.full((2,), 500, device=device),
                encoder_hidden_states=text.to(device, dtype), return_dict=False)


@torch.no_grad()
def outputs(grid, dtype, device, parallel=None):
    """{name: output} of the tiny Wan with draft attention at every sparsity, and with the dense steps
    on (they run the stock processor). `parallel`: a ContextParallelConfig, applied before enable()
    for the sparse models and after it for the dense-step one (diffusers reaches the stock processor
    through ours)."""
    results, inputs = {}, model_inputs(grid, dtype, device)
    runs = [(f"sparsity={s}", DraftConfig(sparsity=s, **SPARSE_EVERYWHERE), "before") for s in SPARSITIES]
    runs.append(("dense steps", DraftConfig(sparsity=0.5, dense_steps_fraction=1.0, dense_layers=()), "after"))
    for name, config, parallel_order in runs:
        model = tiny_wan(dtype, device)
        if parallel is not None and parallel_order == "before":
            model.enable_parallelism(config=parallel)
        if config is not None:
            enable(model, config)
        if parallel is not None and parallel_order == "after":
            model.enable_parallelism(config=parallel)
        results[name] = model(**inputs)[0].float().cpu()
    return results


def parallel_worker(rank, world_size, port, backend, grid, dtype, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if backend == "gloo":
        # diffusers picks the rank's device as rank % torch.accelerator.device_count(), 0 without one.
        torch.accelerator.device_count = lambda: 1
        device = torch.device("cpu")
    else:
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    if not hasattr(logging.Logger, "warning_once"):
        # diffusers' context-parallel hook calls logger.warning_once, which only transformers defines.
        logging.Logger.warning_once = logging.Logger.warning
    # Sizes of an uneven split (ulysses_anything) travel through the CPU group, named "cpu:gloo" in the backend.
    backend = "cpu:gloo" if backend == "gloo" else "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=120))
    try:
        check_uneven_exchange(UlyssesGroup(dist.group.WORLD, world_size, rank), device)
        parallel = ContextParallelConfig(ulysses_degree=world_size, ulysses_anything=grid == UNEVEN_GRID)
        results = outputs(grid, dtype, device, parallel)
        if rank == 0:
            torch.save(results, result_path)
    finally:
        dist.destroy_process_group()


def check_uneven_exchange(ulysses, device):
    """gather_sequence gives this rank's heads of the whole sequence in model order; scatter_sequence undoes it."""
    full = torch.randn(2, 7, 2 * ulysses.size, 3, generator=torch.Generator().manual_seed(2)).to(device)
    sizes = sequence_split(7, ulysses.size)
    chunk = full.tensor_split(ulysses.size, dim=1)[ulysses.rank]
    gathered = gather_sequence(chunk, ulysses, sizes)
    torch.testing.assert_close(gathered, full[:, :, 2 * ulysses.rank:2 * ulysses.rank + 2], atol=0, rtol=0)
    torch.testing.assert_close(scatter_sequence(gathered, ulysses, sizes), chunk, atol=0, rtol=0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpu_reason():
    if torch.cuda.device_count() < 2:
        return f"needs 2 CUDA devices, found {torch.cuda.device_count()}"
    if not draftattn_cuda.cuda_kernels_built():
        return "draftattn_cuda was built without CUDA kernels"
    if not dist.is_nccl_available():
        return "torch has no NCCL"
    return None


GLOO = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                          reason="torch.distributed with gloo is unavailable")
NCCL = pytest.mark.skipif(gpu_reason() is not None, reason=str(gpu_reason()))
CASES = [pytest.param("gloo", EVEN_GRID, marks=GLOO, id="gloo-even"),
         pytest.param("nccl", EVEN_GRID, marks=NCCL, id="nccl-even"),
         pytest.param("nccl", UNEVEN_GRID, marks=NCCL, id="nccl-uneven")]


@pytest.mark.parametrize("backend, grid", CASES)
def test_two_ranks_match_one_process(backend, grid, tmp_path):
    dtype, device = torch.bfloat16, ("cpu" if backend == "gloo" else "cuda")
    result_path = tmp_path / "rank0.pt"
    mp.spawn(parallel_worker, args=(2, free_port(), backend, grid, dtype, str(result_path)), nprocs=2)
    parallel = torch.load(result_path)
    single = outputs(grid, dtype, device)
    for name, expected in single.items():
        got = parallel[name]
        torch.testing.assert_close(got, expected, atol=3e-2, rtol=3e-2, msg=name)
        assert (got - expected).abs().mean() < 3e-3, name
    # Draft attention really ran: sparsity 0.5 changes the output.
    assert (parallel["sparsity=0.5"] - parallel["sparsity=0.0"]).abs().max() > 1e-3


def test_sequence_split_follows_diffusers_sharding():
    for tokens in (600, 105, 7):
        x = torch.arange(tokens)
        assert sequence_split(tokens, 4) == [len(chunk) for chunk in x.tensor_split(4)]
        if tokens % 4 == 0:
            assert sequence_split(tokens, 4) == [len(chunk) for chunk in x.chunk(4)]


class StandInMesh:
    """A mesh dimension of one rank for tests that only need the processors' refusals (no collective runs)."""

    def get_group(self):
        return None


def stand_in_parallel_config(ring_degree=1, ulysses_degree=2):
    context = SimpleNamespace(ring_degree=ring_degree, ulysses_degree=ulysses_degree, _ulysses_mesh=StandInMesh(),
                              _ulysses_local_rank=0)
    return SimpleNamespace(context_parallel_config=context)


def test_ring_attention_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="ring_degree must be 1, got 2"):
        ulysses_group_of(stand_in_parallel_config(ring_degree=2, ulysses_degree=1))


def test_processor_forwards_diffusers_settings_to_the_original():
    model = tiny_wan(torch.float32, "cpu")
    original = model.blocks[1].attn1.processor
    enable(model, DraftConfig(dense_layers=()))
    processor, config = model.blocks[1].attn1.processor, stand_in_parallel_config()
    processor._parallel_config = config
    processor._attention_backend = "native"
    assert original._parallel_config is config and processor._parallel_config is config
    assert original._attention_backend == "native"


@torch.no_grad()
def test_permute_once_is_refused_under_context_parallelism():
    model = tiny_wan(torch.float32, "cpu")
    enable(model, DraftConfig(permute_once=True, **SPARSE_EVERYWHERE))
    for block in model.blocks:
        block.attn1.processor._parallel_config = stand_in_parallel_config()
    with pytest.raises(ValueError, match="DraftConfig.permute_once cannot run under diffusers' context parallelism"):
        model(**model_inputs(EVEN_GRID, torch.float32, "cpu"))


@torch.no_grad()
def test_hunyuan_video_refuses_context_parallelism_on_dense_calls_too():
    torch.manual_seed(0)
    model = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16,
                                           num_layers=1, num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0,
                                           text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(4, 6, 6),
                                           guidance_embeds=False).eval()
    enable(model, DraftConfig(dense_layers=()))
    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        block.attn.processor._parallel_config = stand_in_parallel_config()
    gen = torch.Generator().manual_seed(1)
    inputs = dict(hidden_states=torch.randn(1, 4, 1, 4, 4, generator=gen), timestep=torch.tensor([500]),
                  encoder_hidden_states=torch.randn(1, 3, 16, generator=gen),
                  encoder_attention_mask=torch.ones(1, 3, dtype=torch.long),
                  pooled_projections=torch.randn(1, 8, generator=gen))
    # Step 0 is a dense step: refused before the stock processor runs.
    with pytest.raises(ValueError, match="context parallelism for HunyuanVideo"):
        model(**inputs)
