"""Draft attention under diffusers' Ulysses context parallelism on 2 GPUs against 1 GPU.

    torchrun --nproc_per_node=2 bench/parallel_check.py [--layers 4] [--latent 21 60 104] [--sparsities 0 0.75]

A random-weight WanTransformer3DModel with Wan2.1-1.3B's block shape (12 heads of 128, fewer layers)
runs in bf16. For every sparsity, rank 0 first runs it alone on its GPU with our processors; then
both ranks run the same weights and inputs under `enable_parallelism(ContextParallelConfig(
ulysses_degree=2))`. Rank 0 prints the max abs and relative L2 difference of the outputs, PASS or
FAIL, and the time of one forward (one denoising step of one sample) each way. Layer 0 stays dense
(the family default), so the stock processor's own parallel path runs too.
"""
import argparse
import logging
import os

import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig, WanTransformer3DModel

from draftattn_cuda.integration import DraftConfig, enable

REL_L2_LIMIT = 2e-2  # bf16 projections of a sequence chunk may round differently from the whole sequence's


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--latent", type=int, nargs=3, default=(21, 60, 104), metavar=("FRAMES", "HEIGHT", "WIDTH"),
                        help="latent size before patchify (2x2 spatial patches); default: Wan 480p, 81 frames")
    parser.add_argument("--sparsities", type=float, nargs="+", default=(0.0, 0.75))
    parser.add_argument("--iters", type=int, default=5)
    return parser.parse_args()


def wan_model(layers, device):
    torch.manual_seed(0)  # the same weights on every rank and in the 1-GPU run
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                                  in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                                  num_layers=layers)
    return model.to(device=device, dtype=torch.bfloat16).eval()


def model_inputs(latent, device):
    gen = torch.Generator().manual_seed(1)
    return dict(hidden_states=torch.randn(1, 16, *latent, generator=gen).to(device, torch.bfloat16),
                timestep=torch.tensor([500], device=device),
                encoder_hidden_states=torch.randn(1, 512, 4096, generator=gen).to(device, torch.bfloat16),
                return_dict=False)  # diffusers' context-parallel hook on the model passes only tensors through


@torch.no_grad()
def timed_forward(model, inputs, iters):
    """(output, milliseconds per forward, the mean over `iters` after two warm-up calls)."""
    for _ in range(2):
        out = model(**inputs)[0]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        out = model(**inputs)[0]
    end.record()
    torch.cuda.synchronize()
    return out, start.elapsed_time(end) / iters


def main():
    args = parse_args()
    if not hasattr(logging.Logger, "warning_once"):
        # diffusers' context-parallel hook calls logger.warning_once, which only transformers defines.
        logging.Logger.warning_once = logging.Logger.warning
    # The CPU group carries the split sizes diffusers exchanges for uneven splits.
    dist.init_process_group("cpu:gloo,cuda:nccl")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    torch.cuda.set_device(device)
    inputs = model_inputs(args.latent, device)
    tokens = args.latent[0] * (args.latent[1] // 2) * (args.latent[2] // 2)
    if rank == 0:
        print(f"Wan block shape 12 x 128, {args.layers} layers, latent {tuple(args.latent)} -> {tokens} tokens, "
              f"bf16, {torch.cuda.get_device_name(device)}; 1 GPU vs Ulysses over {world_size} GPUs")
    failed = False
    for sparsity in args.sparsities:
        config = DraftConfig(sparsity=sparsity, dense_steps_fraction=0.0)
        if rank == 0:
            single_model = wan_model(args.layers, device)
            enable(single_model, config)
            single, single_ms = timed_forward(single_model, inputs, args.iters)
            del single_model
        dist.barrier()
        model = wan_model(args.layers, device)
        model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world_size))
        enable(model, config)
        dist.barrier()
        parallel, parallel_ms = timed_forward(model, inputs, args.iters)
        del model
        if rank == 0:
            diff = (parallel.float() - single.float())
            max_abs = diff.abs().max().item()
            rel_l2 = (diff.norm() / single.float().norm()).item()
            ok = rel_l2 < REL_L2_LIMIT
            failed |= not ok
            print(f"sparsity {sparsity}: max abs diff {max_abs:.3e}, rel L2 {rel_l2:.3e} "
                  f"({'PASS' if ok else 'FAIL'}, limit {REL_L2_LIMIT}); one step: 1 GPU {single_ms:.1f} ms, "
                  f"{world_size} GPUs {parallel_ms:.1f} ms ({single_ms / parallel_ms:.2f}x)")
    dist.destroy_process_group()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
