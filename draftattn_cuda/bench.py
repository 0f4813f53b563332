"""The project's main job: `python -m draftattn_cuda.bench`.

With a GPU: times torch.ops.draftattn.sparse_attn against cuDNN dense attention and
FlexAttention (a BlockMask built from the same block lists) on model shapes.
Without one: runs draft_attention through the exact CPU reference on a small video and
reports density, error and time.
"""
import argparse
import json
import math
import shlex
import sys
import time

import torch

import draftattn_cuda as da

GPU_SHAPES = {  # batch, heads, tokens, head_dim
    "wan1.3b-480p": (1, 12, 32760, 128),
    "wan14b-720p": (1, 40, 75600, 128),
    "hunyuan-720p": (1, 24, 119056, 128),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m draftattn_cuda.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", metavar="NAME|B,H,N,D",
                        help=f"GPU shape, repeatable: one of {sorted(GPU_SHAPES)} or batch,heads,tokens,head_dim "
                             "(default: all named shapes)")
    parser.add_argument("--density", default="1.0,0.5,0.25,0.1", help="GPU: kept block fractions, comma list")
    parser.add_argument("--sparsity", default="0.5,0.9", help="CPU: draft_attention sparsities, comma list")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--fp8", action="store_true",
                        help="GPU: also time the fp8 (e4m3) kernel on quantize_fp8 inputs, next to bf16")
    parser.add_argument("--cpu", action="store_true", help="run the CPU reference even when a GPU is present")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def parse_shape(text):
    if text in GPU_SHAPES:
        return text, GPU_SHAPES[text]
    try:
        batch, heads, tokens, head_dim = (int(part) for part in text.split(","))
    except ValueError:
        raise SystemExit(f"--shape must be one of {sorted(GPU_SHAPES)} or batch,heads,tokens,head_dim; got {text!r}")
    return text, (batch, heads, tokens, head_dim)


def floats(text, name):
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"--{name} must be a comma list of numbers, got {text!r}")


def relative_l2(got, want):
    return (torch.linalg.vector_norm(got.float() - want.float()) / torch.linalg.vector_norm(want.float())).item()


def token_mask_in_model_order(layout, kv_indices, kv_counts):
    """(batch, heads, tokens, tokens) bool: the token pairs the block lists compute."""
    batch, heads, nb, max_blocks = kv_indices.shape
    listed = torch.arange(max_blocks) < kv_counts.unsqueeze(-1)
    blocks = torch.zeros(batch, heads, nb, nb + 1, dtype=torch.bool)
    blocks.scatter_(-1, torch.where(listed, kv_indices.long(), nb), True)
    row_block = layout.model_index() // 128
    return blocks[..., :nb][:, :, row_block][:, :, :, row_block]


def dense_attention_fp32(q, k, v, mask=None):
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)


def video_like_qkv(layout, heads, head_dim, dtype, generator):
    """q and k share a smooth random field over (frame, y, x) plus noise, so attention is
    local in space and time as in video models; v and text tokens are plain noise."""
    coarse = torch.randn(1, heads * head_dim, layout.frames, math.ceil(layout.height / 6), math.ceil(layout.width / 6),
                         generator=generator)
    field = torch.nn.functional.interpolate(coarse, size=(layout.frames, layout.height, layout.width),
                                            mode="trilinear")
    field = field.flatten(2).transpose(1, 2).reshape(1, layout.video_tokens, heads, head_dim)

    def with_text(video):
        text = torch.randn(1, layout.text_len, heads, head_dim, generator=generator)
        return torch.cat([text, video] if layout.text_first else [video, text], 1).to(dtype)

    def noise():
        return torch.randn(1, layout.video_tokens, heads, head_dim, generator=generator)

    return with_text(2 * field + noise()), with_text(2 * field + noise()), with_text(noise())


def run_cpu(args, reason):
    print(f"{reason}: running the exact CPU reference (ATen ops, not a kernel) on a small video.")
    layout = da.VideoLayout(3, 30, 52, text_len=77)
    heads, head_dim, dtype = 2, 64, DTYPES[args.dtype]
    generator = torch.Generator().manual_seed(args.seed)
    q, k, v = video_like_qkv(layout, heads, head_dim, dtype, generator)
    print(f"layout: {layout} -> {layout.tokens} tokens, {layout.num_blocks} blocks of 128; {heads} heads, "
          f"head_dim {head_dim}, {args.dtype}; synthetic video-like q, k (seed {args.seed})")
    dense = dense_attention_fp32(q, k, v)
    results = []
    for sparsity in floats(args.sparsity, "sparsity"):
        start = time.perf_counter()
        out, stats = da.draft_attention(q, k, v, layout, sparsity=sparsity, return_stats=True)
        seconds = time.perf_counter() - start
        masked = dense_attention_fp32(q, k, v, token_mask_in_model_order(layout, stats["kv_indices"], stats["kv_counts"]))
        row = {"sparsity": sparsity, "density": stats["density"].mean().item(),
               "rel_l2_vs_masked_dense": relative_l2(out, masked), "rel_l2_vs_dense": relative_l2(out, dense),
               "seconds": seconds}
        results.append(row)
        print(f"sparsity {sparsity:.2f}: kept density {row['density']:.3f}, rel. L2 error vs dense fp32 under the "
              f"same mask {row['rel_l2_vs_masked_dense']:.2e}, vs plain dense {row['rel_l2_vs_dense']:.2e}, "
              f"time {seconds * 1e3:.1f} ms")
    return {"device": "cpu", "layout": repr(layout), "heads": heads, "head_dim": head_dim, "dtype": args.dtype,
            "results": results}


def uniform_block_lists(batch, heads, num_blocks, count, device, generator):
    """Every row lists `count` distinct random kv blocks, ascending."""
    scores = torch.rand(batch, heads, num_blocks, num_blocks, device=device, generator=generator)
    chosen = scores.argsort(-1)[..., :count].sort(-1).values.to(torch.int32)
    return chosen, torch.full((batch, heads, num_blocks), count, dtype=torch.int32, device=device)


def run_gpu(args):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
    from triton.testing import do_bench

    def median_ms(fn):
        return do_bench(fn, warmup=25, rep=100, return_mode="median")

    card = torch.cuda.get_device_name()
    print(f"GPU: {card} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}); sparse_attn CUDA kernel "
          f"{'built' if da.cuda_kernels_built() else 'NOT built: the CUDA key runs the ATen reference'}")
    dtype, device = DTYPES[args.dtype], torch.device("cuda")
    generator = torch.Generator(device).manual_seed(args.seed)
    # One compiled FlexAttention per (shape, mask): past dynamo's recompile limit it would run
    # eagerly and materialise the whole score matrix.
    torch._dynamo.config.recompile_limit = 256
    flex = torch.compile(flex_attention, dynamic=False)
    results = []
    for name, (batch, heads, tokens, head_dim) in map(parse_shape, args.shape or list(GPU_SHAPES)):
        q, k, v = (torch.randn(batch, tokens, heads, head_dim, device=device, dtype=dtype, generator=generator)
                   for _ in range(3))
        q_t, k_t, v_t = (t.transpose(1, 2) for t in (q, k, v))
        dense_flops = 4 * batch * heads * tokens**2 * head_dim
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            cudnn_ms = median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q_t, k_t, v_t))
        print(f"\n{name}: batch {batch}, heads {heads}, tokens {tokens}, head_dim {head_dim}, {args.dtype}; "
              f"cuDNN dense {cudnn_ms:.3f} ms ({dense_flops / cudnn_ms / 1e9:.0f} TFLOP/s)")
        num_blocks = math.ceil(tokens / 128)
        if args.fp8:
            quant_ms = median_ms(lambda: da.quantize_fp8(q, k, v))
            quantized = da.quantize_fp8(q, k, v)
            print(f"  fp8 quantisation pass (quantize_fp8): {quant_ms:.3f} ms")
        for wanted in floats(args.density, "density"):
            count = max(1, min(num_blocks, round(wanted * num_blocks)))
            kv_indices, kv_counts = uniform_block_lists(batch, heads, num_blocks, count, device, generator)
            density = count / num_blocks
            ours_ms = median_ms(lambda: torch.ops.draftattn.sparse_attn(q, k, v, kv_indices, kv_counts))
            none = torch.zeros_like(kv_counts)
            block_mask = BlockMask.from_kv_blocks(none, torch.zeros_like(kv_indices), kv_counts, kv_indices,
                                                  BLOCK_SIZE=128, seq_lengths=(tokens, tokens), compute_q_blocks=False)
            flex_ms = median_ms(lambda: flex(q_t, k_t, v_t, block_mask=block_mask))
            agreement = relative_l2(torch.ops.draftattn.sparse_attn(q, k, v, kv_indices, kv_counts)[0],
                                    flex(q_t, k_t, v_t, block_mask=block_mask).transpose(1, 2))
            row = {"shape": name, "batch": batch, "heads": heads, "tokens": tokens, "head_dim": head_dim,
                   "dtype": args.dtype, "density": density, "ours_ms": ours_ms, "flex_ms": flex_ms,
                   "cudnn_dense_ms": cudnn_ms, "ours_tflops": dense_flops * density / ours_ms / 1e9,
                   "flex_tflops": dense_flops * density / flex_ms / 1e9, "speedup_vs_flex": flex_ms / ours_ms,
                   "speedup_vs_cudnn_dense": cudnn_ms / ours_ms, "rel_l2_vs_flex": agreement}
            if args.fp8:
                fp8_call = lambda: da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:])  # noqa: E731
                fp8_ms = median_ms(fp8_call)
                row.update(fp8_ms=fp8_ms, fp8_tflops=dense_flops * density / fp8_ms / 1e9,
                           fp8_speedup_vs_bf16=ours_ms / fp8_ms, fp8_quantize_ms=quant_ms,
                           fp8_rel_l2_vs_bf16=relative_l2(fp8_call()[0], torch.ops.draftattn.sparse_attn(
                               q, k, v, kv_indices, kv_counts)[0]))
                print(f"  density {density:.3f}: ours fp8 {fp8_ms:.3f} ms ({row['fp8_tflops']:.0f} TFLOP/s), "
                      f"x{row['fp8_speedup_vs_bf16']:.2f} vs ours {args.dtype}, rel. L2 vs {args.dtype} "
                      f"{row['fp8_rel_l2_vs_bf16']:.1e}")
            results.append(row)
            print(f"  density {density:.3f}: ours {ours_ms:.3f} ms ({row['ours_tflops']:.0f} TFLOP/s), flex "
                  f"{flex_ms:.3f} ms ({row['flex_tflops']:.0f} TFLOP/s), x{row['speedup_vs_flex']:.2f} vs flex, "
                  f"x{row['speedup_vs_cudnn_dense']:.2f} vs cuDNN dense, rel. L2 vs flex {agreement:.1e}")
        del q, k, v, q_t, k_t, v_t
        if args.fp8:
            del quantized
        torch.cuda.empty_cache()
    return {"device": card, "torch": torch.__version__, "results": results}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    print("reproduce: " + shlex.join(["python", "-m", "draftattn_cuda.bench", *argv]))
    if args.cpu or not torch.cuda.is_available():
        report = run_cpu(args, "--cpu given" if args.cpu else "no CUDA GPU found")
    else:
        report = run_gpu(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
