"""Times the CUDA drafting ops for every model shape of docs/ALGORITHM.md (batch 1):

  layout+pool   to_regions_and_pool(q, k, v): region-major q, k, v plus pooled q, k
  pool q,k      mean_pool of q and of k alone (the drafting share of that pass)
  draft map+sel draft_select, per rule (logits, softmax, thresholds, block lists)
  from_regions  the inverse layout of the attention output
  attention     sparse_attn at 90% sparsity (global rule), for the drafting / attention ratio

Memory floor = bytes that must be read + written / 3.0 TB/s; ratio = time / floor.

  python bench/bench_drafting.py [--shape wan14b_720p] [--reps 20] [--json PATH]
"""
import argparse
import json

import torch

import draftattn_cuda
from draftattn_cuda import VideoLayout

ops = torch.ops.draftattn
FLOOR_BYTES_PER_S = 3.0e12

# name: (frames, height, width, heads, head_dim, text_len, text_first); Wan-14B 720p first.
SHAPES = {
    "wan14b_720p": (21, 45, 80, 40, 128, 0, False),
    "wan1.3b_480p": (21, 30, 52, 12, 128, 0, False),
    "wan14b_768p": (21, 48, 80, 40, 128, 0, False),
    "hunyuan_720p": (33, 45, 80, 24, 128, 256, False),
    "hunyuan_768p": (33, 48, 80, 24, 128, 256, False),
    "cogvideox_480p": (13, 30, 45, 48, 64, 226, True),
}


def median_ms(fn, reps):
    """Median of `reps` timed calls (CUDA events) after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def bench_shape(name, reps, attention):
    frames, height, width, heads, head_dim, text_len, text_first = SHAPES[name]
    layout = VideoLayout(frames, height, width, text_len=text_len, text_first=text_first)
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (1, layout.tokens, heads, head_dim)
    q, k, v = (torch.randn(shape, device="cuda", generator=gen, dtype=torch.bfloat16) for _ in range(3))
    elem, S = q.element_size(), layout.num_regions
    model_bytes = q.numel() * elem
    region_bytes = layout.padded_tokens * heads * head_dim * elem
    video_bytes = layout.video_tokens * heads * head_dim * elem
    pooled_bytes = heads * S * head_dim * 4
    rows = {}

    def record(label, ms, floor_bytes):
        floor_ms = floor_bytes / FLOOR_BYTES_PER_S * 1e3
        rows[label] = {"ms": ms, "floor_ms": floor_ms, "ratio": ms / floor_ms}

    record("layout+pool", median_ms(lambda: ops.to_regions_and_pool(q, k, v, *layout.op_args), reps),
           3 * model_bytes + 3 * region_bytes + 2 * pooled_bytes)
    record("pool q,k", median_ms(lambda: (ops.mean_pool(q, *layout.op_args), ops.mean_pool(k, *layout.op_args)), reps),
           2 * video_bytes + 2 * pooled_bytes)
    q_regions, k_regions, v_regions, q_pooled, k_pooled = ops.to_regions_and_pool(q, k, v, *layout.op_args)
    list_bytes = heads * layout.num_blocks * (layout.num_blocks + 1) * 4
    for rule in ("global", "topk", "topp"):
        record(f"draft map+sel {rule}",
               median_ms(lambda: ops.draft_select(q_pooled, k_pooled, rule, 0.9, 0.9, layout.text_blocks,
                                                  layout.text_first), reps),
               2 * pooled_bytes + list_bytes)
    out_regions = torch.randn(v_regions.shape, device="cuda", generator=gen, dtype=torch.bfloat16)
    record("from_regions", median_ms(lambda: ops.from_regions(out_regions, *layout.op_args), reps),
           2 * model_bytes)

    result = {"shape": name, "tokens": layout.tokens, "heads": heads, "head_dim": head_dim, "regions": S,
              "timings": rows}
    drafting_ms = rows["pool q,k"]["ms"] + rows["draft map+sel global"]["ms"]
    result["drafting_ms"] = drafting_ms
    if attention:
        kv_indices, kv_counts = ops.draft_select(q_pooled, k_pooled, "global", 0.9, 0.9, layout.text_blocks,
                                                 layout.text_first)
        block_lens = layout.block_lens("cuda")
        attn_ms = median_ms(lambda: draftattn_cuda.sparse_attn(q_regions, k_regions, v_regions, kv_indices,
                                                               kv_counts, block_lens), max(3, reps // 4))
        result["attention_90_ms"] = attn_ms
        result["drafting_over_attention"] = drafting_ms / attn_ms
    return result


def print_result(r):
    print(f"\n{r['shape']}: {r['tokens']} tokens x {r['heads']} heads x {r['head_dim']}, S={r['regions']} regions")
    print(f"  {'op':<24}{'ms':>10}{'floor ms':>11}{'ratio':>8}")
    for label, t in r["timings"].items():
        print(f"  {label:<24}{t['ms']:>10.3f}{t['floor_ms']:>11.3f}{t['ratio']:>8.2f}")
    line = f"  drafting (pool q,k + draft map + global selection): {r['drafting_ms']:.3f} ms"
    if "attention_90_ms" in r:
        line += (f"; sparse attention at 90%: {r['attention_90_ms']:.3f} ms"
                 f" -> drafting = {100 * r['drafting_over_attention']:.2f}% of attention")
    print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="shapes to run (default: all)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--no-attention", action="store_true", help="skip timing sparse_attn")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_drafting.py needs a CUDA device")
    card = torch.cuda.get_device_name()
    print(f"card: {card}; memory floor at {FLOOR_BYTES_PER_S / 1e12:.1f} TB/s")
    results = []
    for name in args.shape or list(SHAPES):
        results.append(bench_shape(name, args.reps, not args.no_attention))
        print_result(results[-1])
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": card, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
