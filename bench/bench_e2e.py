"""End-to-end speed of one denoising step of real video transformer architectures (random weights).

For each model: one transformer forward (batch 1 = one guidance branch; Wan runs two per step,
HunyuanVideo one, which leaves the ratios unchanged) with the stock processors under dense cuDNN
attention, then with draft attention at each sparsity (the model's default dense layers stay on
the stock path). Reported: step time, time inside the self-attention modules (projections, norms,
rotary, attention, output projection; hooks with CUDA events) and its share of the step, the
kept density, and the total of `--steps` steps with the first `--dense-fraction` of them dense
(the dense steps of the per-layer mode run the stock path, so they cost the dense step; with
--permute-once they run our kernel with every block, measured separately).

--layers N builds N blocks of each kind (Wan: blocks; HunyuanVideo: N dual- and N single-stream
blocks) and EXTRAPOLATES to the full depth from per-block times: the time outside the blocks as
measured, plus, per kind of block, the full model's count of dense and of sparse blocks times
the mean measured time of that kind. The table says when it is an estimate.

  python bench/bench_e2e.py --model wan14b-720p,hunyuan-720p,wan1.3b-480p [--sparsity 0.75,0.9] [--layers N]
  python bench/bench_e2e.py --tiny      # CPU smoke run with tiny configs (the CPU reference ops)
"""
import argparse
import contextlib
import math
import statistics
import sys
import time

import torch

import draftattn_cuda
from draftattn_cuda.integration import DraftConfig, disable, enable, set_step
from draftattn_cuda.integration.families import family_of

TEXT_DIM = 4096  # umT5 (Wan) and Llama (HunyuanVideo) hidden size

# name: (diffusers class name, constructor config, latent (channels, frames, height, width), text tokens)
MODELS = {
    "wan14b-720p": ("WanTransformer3DModel", dict(num_attention_heads=40, ffn_dim=13824, num_layers=40,
                                                  text_dim=TEXT_DIM), (16, 21, 90, 160), 512),
    "hunyuan-720p": ("HunyuanVideoTransformer3DModel", dict(), (16, 33, 90, 160), 256),
    "wan1.3b-480p": ("WanTransformer3DModel", dict(num_attention_heads=12, ffn_dim=8960, num_layers=30,
                                                   text_dim=TEXT_DIM), (16, 21, 60, 104), 512),
}
TINY = {
    "wan-tiny": ("WanTransformer3DModel", dict(num_attention_heads=2, attention_head_dim=64, in_channels=4,
                                               out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
                                               rope_max_seq_len=64), (4, 2, 20, 40), 8),
    "hunyuan-tiny": ("HunyuanVideoTransformer3DModel", dict(in_channels=4, out_channels=4, num_attention_heads=2,
                                                            attention_head_dim=64, num_layers=3, num_single_layers=1,
                                                            num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=32,
                                                            pooled_projection_dim=16, rope_axes_dim=(16, 24, 24)),
                     (4, 2, 20, 40), 20),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wan14b-720p,hunyuan-720p,wan1.3b-480p",
                        help=f"comma list of {sorted(MODELS)}")
    parser.add_argument("--sparsity", default="0.75,0.9", help="comma list of draft sparsities")
    parser.add_argument("--layers", type=int, default=None, help="build N blocks of each kind and extrapolate")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dense-fraction", type=float, default=0.25, help="first fraction of steps run dense")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per mode (median), after one warm-up")
    parser.add_argument("--permute-once", action="store_true", help="DraftConfig(permute_once=True)")
    parser.add_argument("--precision", default="native", choices=("native", "fp8"))
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny configs")
    args = parser.parse_args(argv)
    args.models = list(TINY) if args.tiny else [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS and m not in TINY]
    if unknown:
        parser.error(f"--model: unknown {unknown}; choose from {sorted(MODELS)}")
    args.sparsities = [float(s) for s in args.sparsity.split(",")]
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --tiny for the CPU smoke mode")
    return args


def build_model(name, layers, device):
    """The transformer with random weights, built directly in bf16 on `device`."""
    class_name, config, _, _ = (TINY if name in TINY else MODELS)[name]
    import diffusers
    model_class = getattr(diffusers, class_name)
    config = dict(config)
    if layers is not None:
        config.update(num_layers=layers, **({"num_single_layers": layers} if "Hunyuan" in class_name else {}))
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device), torch.no_grad():
            model = model_class(**config)
    finally:
        torch.set_default_dtype(default_dtype)
    return model.to(device, torch.bfloat16).eval()


def model_inputs(name, model, device):
    _, _, latent_shape, text_len = (TINY if name in TINY else MODELS)[name]
    gen = torch.Generator(device).manual_seed(0)
    bf16 = dict(device=device, dtype=torch.bfloat16, generator=gen)
    inputs = dict(hidden_states=torch.randn(1, *latent_shape, **bf16), timestep=torch.full((1,), 500, device=device),
                  encoder_hidden_states=torch.randn(1, text_len, model.config.text_dim if "text_dim" in model.config
                                                    else model.config.text_embed_dim, **bf16))
    if type(model).__name__ == "HunyuanVideoTransformer3DModel":
        inputs.update(encoder_attention_mask=torch.ones(1, text_len, device=device, dtype=torch.long),
                      pooled_projections=torch.randn(1, model.config.pooled_projection_dim, **bf16))
        if model.config.guidance_embeds:
            inputs["guidance"] = torch.full((1,), 6000.0, device=device, dtype=torch.bfloat16)
    return inputs


def blocks_of(model):
    """(block, kind) in the order of the family's self-attention modules."""
    if type(model).__name__ == "HunyuanVideoTransformer3DModel":
        return ([(b, "dual-stream") for b in model.transformer_blocks]
                + [(b, "single-stream") for b in model.single_transformer_blocks])
    return [(b, "block") for b in model.blocks]


class Clock:
    """Elapsed milliseconds between marks: CUDA events on the GPU (no sync until read), else wall time."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def ms(self, start, end):
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return (end - start) * 1e3


@torch.no_grad()
def timed_step(model, inputs, clock):
    """One forward: (step ms, per block: (block ms, self-attention module ms))."""
    blocks = blocks_of(model)
    attention = family_of(model).self_attention_modules(model)
    marks, hooks = {}, []
    for key, module in [(("block", i), b) for i, (b, _) in enumerate(blocks)] + \
                       [(("attn", i), a) for i, a in enumerate(attention)]:
        hooks.append(module.register_forward_pre_hook(lambda m, a, key=key: marks.__setitem__((key, 0), clock.mark())))
        hooks.append(module.register_forward_hook(lambda m, a, o, key=key: marks.__setitem__((key, 1), clock.mark())))
    start = clock.mark()
    model(**inputs)
    end = clock.mark()
    for hook in hooks:
        hook.remove()
    per_block = [(clock.ms(marks[(("block", i), 0)], marks[(("block", i), 1)]),
                  clock.ms(marks[(("attn", i), 0)], marks[(("attn", i), 1)])) for i in range(len(blocks))]
    return clock.ms(start, end), per_block


def measure(model, inputs, clock, repeats):
    """Median over `repeats` steps after one warm-up: (step ms, per-block (ms, attention ms))."""
    timed_step(model, inputs, clock)
    runs = [timed_step(model, inputs, clock) for _ in range(repeats)]
    step = statistics.median(r[0] for r in runs)
    per_block = [tuple(statistics.median(r[1][i][j] for r in runs) for j in range(2)) for i in range(len(runs[0][1]))]
    return step, per_block


def full_depth(name, model, step, per_block, dense_layers, layers):
    """(step ms, self-attention ms) of the full-depth model: measured, or extrapolated from `layers`
    blocks per kind. dense_layers: full-model indices of the dense self-attention layers, None = all."""
    attention_ms = sum(a for _, a in per_block)
    if layers is None:
        return step, attention_ms
    _, config, _, _ = (TINY if name in TINY else MODELS)[name]
    full_counts = {"block": config.get("num_layers", 40), "dual-stream": config.get("num_layers", 20),
                   "single-stream": config.get("num_single_layers", 40)}
    kinds = [kind for _, kind in blocks_of(model)]
    blocks_ms, attention_ms, full_offset = 0.0, 0.0, 0
    for kind in dict.fromkeys(kinds):
        measured = [per_block[i] for i, k in enumerate(kinds) if k == kind]
        for dense in (True, False):
            def in_group(position):
                return dense_layers is None or ((full_offset + position) in dense_layers) == dense
            sample = [times for position, times in enumerate(measured) if in_group(position)]
            count = sum(1 for position in range(full_counts[kind]) if in_group(position))
            if count and not sample:
                raise SystemExit(f"--layers {layers}: no {'dense' if dense else 'sparse'} {kind} block was measured; "
                                 "use more layers")
            if count:
                blocks_ms += count * statistics.mean(b for b, _ in sample)
                attention_ms += count * statistics.mean(a for _, a in sample)
            if dense_layers is None:
                break
        full_offset += full_counts[kind]
    outside = step - sum(b for b, _ in per_block)
    return outside + blocks_ms, attention_ms


def dense_backends(device):
    """(context, label) pairs for the stock processors' dense attention, preferred first: cuDNN alone,
    then cuDNN where it accepts the call (masks) with flash / memory-efficient otherwise."""
    if device.type != "cuda":
        return [(contextlib.nullcontext, "SDPA (CPU)")]
    from torch.nn.attention import SDPBackend, sdpa_kernel
    mixed = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    return [(lambda: sdpa_kernel(SDPBackend.CUDNN_ATTENTION), "cuDNN (SDPA)"),
            (lambda: sdpa_kernel(mixed, set_priority=True), "SDPA cuDNN > flash > efficient")]


def measure_dense(model, inputs, clock, repeats, device):
    """The stock model under the first dense backend that accepts every call: (context, label, step, blocks)."""
    for context, label in dense_backends(device):
        try:
            with context():
                return context, label, *measure(model, inputs, clock, repeats)
        except RuntimeError as error:
            print(f"note: dense attention with {label} failed ({str(error).splitlines()[0]}); trying the next backend",
                  file=sys.stderr)
    raise SystemExit("no SDPA backend accepted the stock model's attention calls")


def bench_model(name, args, device, clock):
    model = build_model(name, args.layers, device)
    inputs = model_inputs(name, model, device)
    dense_layers = set(family_of(model).default_dense_layers)
    n_dense = math.ceil(args.dense_fraction * args.steps)
    context, label, dense_step, dense_blocks = measure_dense(model, inputs, clock, args.repeats, device)
    dense_total, dense_attention = full_depth(name, model, dense_step, dense_blocks, None, args.layers)
    rows = [(f"dense, {label}", dense_total, dense_attention, 1.0, args.steps * dense_total)]
    ours_dense_total = dense_total  # per-layer mode: dense steps run the stock path
    with context():  # the dense layers of our sparse steps keep the stock path
        if args.permute_once:
            enable(model, DraftConfig(permute_once=True, precision=args.precision))
            set_step(model, 0, args.steps)
            step, blocks = measure(model, inputs, clock, args.repeats)
            ours_dense_total, attention = full_depth(name, model, step, blocks, None, args.layers)
            rows.append(("ours, dense step (all blocks)", ours_dense_total, attention, 1.0, None))
        for sparsity in args.sparsities:
            stats = enable(model, DraftConfig(sparsity=sparsity, permute_once=args.permute_once,
                                              precision=args.precision))
            set_step(model, args.steps - 1, args.steps)
            step, blocks = measure(model, inputs, clock, args.repeats)
            total, attention = full_depth(name, model, step, blocks, dense_layers, args.layers)
            density = float(stats.mean_density())
            run_total = n_dense * ours_dense_total + (args.steps - n_dense) * total
            rows.append((f"ours {sparsity:.0%} sparse", total, attention, density, run_total))
    disable(model)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows, n_dense


def markdown(name, rows, n_dense, args):
    dense_run = rows[0][4]
    estimate = f" (extrapolated from {args.layers} blocks per kind)" if args.layers else ""
    lines = [f"### {name}{estimate}", "",
             f"| mode | step ms | self-attention ms (share) | kept density | {args.steps}-step total s "
             f"({n_dense} dense) | speedup |", "|---|---|---|---|---|---|"]
    for mode, step, attention, density, run_total in rows:
        total = "" if run_total is None else f"{run_total / 1e3:.1f}"
        speedup = "" if run_total is None else f"{dense_run / run_total:.2f}x"
        lines.append(f"| {mode} | {step:.1f} | {attention:.1f} ({attention / step:.0%}) | {density:.3f} | {total} | "
                     f"{speedup} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device = torch.device("cpu" if args.tiny else "cuda")
    card = "CPU (reference ops)" if args.tiny else torch.cuda.get_device_name()
    import diffusers
    print(f"## End-to-end denoising step, {card}\n")
    print(f"Command: `python bench/bench_e2e.py {' '.join(sys.argv[1:] if argv is None else argv)}`; torch "
          f"{torch.__version__}, diffusers {diffusers.__version__}, CUDA kernels built: "
          f"{draftattn_cuda.cuda_kernels_built()}. Random bf16 weights, batch 1, precision {args.precision}, "
          f"permute_once {args.permute_once}; the model's default dense layers stay dense.\n")
    clock = Clock(device)
    tables = []
    for name in args.models:
        rows, n_dense = bench_model(name, args, device, clock)
        tables.append(markdown(name, rows, n_dense, args))
        print(tables[-1] + "\n", flush=True)
    return tables


if __name__ == "__main__":
    main()
