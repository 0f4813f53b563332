"""Times the CUDA drafting ops on model shapes of docs/ALGORITHM.md (batch 1; default Wan-14B and HunyuanVideo 720p):

  layout+pool   to_regions_and_pool(q, k, v): region-major q, k, v plus pooled q, k
  layout        to_regions of q, k and v alone (what the pooling rides on in that pass)
  layout+fp8    to_regions_and_quantize_fp8(q, k, v): the same pass writing e4m3 q, k, V^T
  pool q,k      mean_pool of q and of k alone (the drafting share of that pass)
  draft map+sel draft_select, per rule (logits, softmax, thresholds, block lists); also
                replayed from a CUDA graph, which leaves out host work (allocation, launches)
  from_regions  the inverse layout of the attention output
  attention     sparse_attn at 90% sparsity (global rule), for the drafting / attention ratio

Per stage: the kernels of mean_pool and draft_select timed by torch.profiler (microseconds
per call, summed per stage). Memory floor = bytes that must be read + written / 3.0 TB/s.

Drafting = pool q,k + draft map + global selection, reported as a share of the attention
time (measured, or --attention-ms to compare against a given time; the bar is 3%), twice: with
pooling as its own pass (as permute-once models need it), and with pooling at its marginal cost
inside the layout pass (layout+pool - layout, as the per-layer pipeline runs it).

  python bench/bench_drafting.py [--shape wan14b-720p] [--reps 20] [--attention-ms 24.5] [--json PATH]
"""
import argparse
import json
from collections import OrderedDict

import torch
from torch.profiler import ProfilerActivity, profile

import draftattn_cuda
from draftattn_cuda import VideoLayout
from draftattn_cuda.benchmark.shapes import MODEL_SHAPES

ops = torch.ops.draftattn
FLOOR_BYTES_PER_S = 3.0e12
BAR = 0.03

# The model shapes of docs/ALGORITHM.md, named as `python -m draftattn_cuda.bench` names them.
SHAPES = MODEL_SHAPES

# Kernel name fragment -> stage label, in pipeline order.
STAGES = [
    ("gather_regions_kernel", "pool (gather_regions)"),
    ("draft_logits_kernel", "logits (+ state zeroing)"),
    ("draft_softmax_kernel", "softmax (+ digit 0)"),
    ("digit_kernel<1>", "digit 1"),
    ("digit_kernel<2>", "digit 2"),
    ("split_ties_kernel", "tie split"),
    ("row_threshold_kernel", "row threshold"),
    ("emit_block_lists_kernel", "emit block lists"),
    ("emset", "memset"),
]


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


def graph_median_ms(fn, reps):
    """Median time of one replay of a CUDA graph holding one call of fn."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return median_ms(graph.replay, reps)


def stage_us(fn, calls):
    """Kernel time per call of fn, microseconds, summed per stage (torch.profiler)."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    stages = OrderedDict()
    for event in prof.key_averages():
        us = getattr(event, "self_device_time_total", 0.0)
        if us <= 0:
            continue
        label = next((stage for fragment, stage in STAGES if fragment in event.key), event.key[:40])
        stages[label] = stages.get(label, 0.0) + us / calls
    order = [stage for _, stage in STAGES]
    return OrderedDict(sorted(stages.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def bench_shape(name, reps, attention, attention_ms):
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
    rows, stages = {}, {}

    def record(label, ms, floor_bytes):
        floor_ms = floor_bytes / FLOOR_BYTES_PER_S * 1e3
        rows[label] = {"ms": ms, "floor_ms": floor_ms, "ratio": ms / floor_ms}

    record("layout+pool", median_ms(lambda: ops.to_regions_and_pool(q, k, v, *layout.op_args), reps),
           3 * model_bytes + 3 * region_bytes + 2 * pooled_bytes)

    record("layout", median_ms(lambda: [ops.to_regions(x, *layout.op_args) for x in (q, k, v)], reps),
           3 * model_bytes + 3 * region_bytes)

    record("layout+fp8", median_ms(lambda: ops.to_regions_and_quantize_fp8(q, k, v, *layout.op_args), reps),
           4 * model_bytes + 3 * region_bytes // elem + 2 * pooled_bytes)

    def pool():
        return ops.mean_pool(q, *layout.op_args), ops.mean_pool(k, *layout.op_args)

    record("pool q,k", median_ms(pool, reps), 2 * video_bytes + 2 * pooled_bytes)
    stages["pool q,k"] = stage_us(pool, 10)
    q_regions, k_regions, v_regions, q_pooled, k_pooled = ops.to_regions_and_pool(q, k, v, *layout.op_args)
    list_bytes = heads * layout.num_blocks * (layout.num_blocks + 1) * 4
    for rule in ("global", "topk", "topp"):
        def select(rule=rule):
            return ops.draft_select(q_pooled, k_pooled, rule, 0.9, 0.9, layout.text_blocks, layout.text_first)

        label = f"draft map+sel {rule}"
        record(label, median_ms(select, reps), 2 * pooled_bytes + list_bytes)
        record(f"{label} (graph)", graph_median_ms(select, reps), 2 * pooled_bytes + list_bytes)
        stages[label] = stage_us(select, 10)
    out_regions = torch.randn(v_regions.shape, device="cuda", generator=gen, dtype=torch.bfloat16)
    record("from_regions", median_ms(lambda: ops.from_regions(out_regions, *layout.op_args), reps),
           2 * model_bytes)

    result = {"shape": name, "tokens": layout.tokens, "heads": heads, "head_dim": head_dim, "regions": S,
              "timings": rows, "stages_us": stages}
    result["drafting_ms"] = rows["pool q,k"]["ms"] + rows["draft map+sel global"]["ms"]
    pool_in_layout_ms = max(0.0, rows["layout+pool"]["ms"] - rows["layout"]["ms"])
    result["drafting_fused_ms"] = pool_in_layout_ms + rows["draft map+sel global"]["ms"]
    if attention:
        kv_indices, kv_counts = ops.draft_select(q_pooled, k_pooled, "global", 0.9, 0.9, layout.text_blocks,
                                                 layout.text_first)
        block_lens = layout.block_lens("cuda")
        result["attention_90_ms"] = median_ms(
            lambda: draftattn_cuda.sparse_attn(q_regions, k_regions, v_regions, kv_indices, kv_counts, block_lens),
            max(3, reps // 4))
    if attention_ms is not None:
        result["attention_90_ms"] = attention_ms
    if "attention_90_ms" in result:
        result["drafting_over_attention"] = result["drafting_ms"] / result["attention_90_ms"]
        result["drafting_fused_over_attention"] = result["drafting_fused_ms"] / result["attention_90_ms"]
    return result


def print_result(r):
    print(f"\n{r['shape']}: {r['tokens']} tokens x {r['heads']} heads x {r['head_dim']}, S={r['regions']} regions")
    print(f"  {'op':<32}{'ms':>10}{'floor ms':>11}{'ratio':>8}")
    for label, t in r["timings"].items():
        print(f"  {label:<32}{t['ms']:>10.3f}{t['floor_ms']:>11.3f}{t['ratio']:>8.2f}")
    for op, stages in r["stages_us"].items():
        total = sum(stages.values())
        parts = ", ".join(f"{stage} {us:.1f}" for stage, us in stages.items())
        print(f"  {op} kernels, us per call: {parts}; sum {total:.1f}")
    for key, what in (("drafting", "pool q,k as its own pass"), ("drafting_fused", "pooling inside the layout pass")):
        line = f"  drafting ({what} + draft map + global selection): {r[key + '_ms']:.3f} ms"
        if "attention_90_ms" in r:
            share = r[key + "_over_attention"]
            line += (f"; sparse attention at 90%: {r['attention_90_ms']:.3f} ms -> {100 * share:.2f}% of"
                     f" attention (bar {100 * BAR:.0f}%: {'met' if share <= BAR else 'NOT met'})")
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="shapes to run (default: wan14b-720p, hunyuan-720p)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--no-attention", action="store_true", help="skip timing sparse_attn")
    parser.add_argument("--attention-ms", type=float, help="attention time to compare drafting against "
                        "(instead of the measured one)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_drafting.py needs a CUDA device")
    card = torch.cuda.get_device_name()
    print(f"card: {card}; memory floor at {FLOOR_BYTES_PER_S / 1e12:.1f} TB/s")
    results = []
    for name in args.shape or ["wan14b-720p", "hunyuan-720p"]:
        measure = not args.no_attention and args.attention_ms is None
        results.append(bench_shape(name, args.reps, measure, args.attention_ms))
        print_result(results[-1])
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": card, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
