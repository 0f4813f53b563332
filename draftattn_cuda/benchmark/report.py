"""Benchmark rows as CSV, JSON and a Markdown table; speedups filled in across rows."""
import csv
import json

BACKEND_ORDER = ("cudnn", "fa2", "sdpa-cpu", "ours", "ours-fp8", "flex")
FIELDS = ("shape", "batch", "heads", "head_dim", "tokens", "padded_tokens", "num_blocks", "dtype", "lists",
          "backend", "dense", "target_density", "density", "block_density", "computed_blocks", "ms",
          "effective_tflops", "computed_tflops", "speedup_vs_dense", "dense_baseline", "speedup_vs_flex",
          "drafting_ms", "quantize_ms", "overhead_ms", "overhead_pct", "check_rel_l2", "check_against")


def add_speedups(rows):
    """speedup_vs_dense against the fastest dense backend of the same (shape, lists) inputs, named in
    dense_baseline; speedup_vs_flex for sparse rows that have a Flex row with the same block lists."""
    for row in rows:
        group = [r for r in rows if (r["shape"], r["lists"]) == (row["shape"], row["lists"])]
        dense = [r for r in group if r["dense"]]
        if dense:
            fastest = min(dense, key=lambda r: r["ms"])
            row["speedup_vs_dense"], row["dense_baseline"] = fastest["ms"] / row["ms"], fastest["backend"]
        flex = [r for r in group if r["backend"] == "flex" and r.get("target_density") == row.get("target_density")]
        if flex and not row["dense"] and row["backend"] != "flex":
            row["speedup_vs_flex"] = flex[0]["ms"] / row["ms"]
    return rows


def write_json(path, meta, rows):
    with open(path, "w") as file:
        json.dump({"meta": meta, "rows": rows}, file, indent=1)


def read_json(path):
    """(meta, rows) of a file written by write_json; raises ValueError on anything else."""
    with open(path) as file:
        data = json.load(file)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} is not a benchmark JSON (no 'rows' list); write one with --json")
    return data.get("meta", {}), data["rows"]


def write_csv(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in FIELDS})


def rate(value):
    return "" if value is None else f"{value:.3g}"


def markdown_table(rows):
    """One line per row, dense rows first within each (shape, lists), then a legend."""
    lines = ["| shape | lists | density | backend | ms | eff. TFLOP/s | computed TFLOP/s | vs dense | vs Flex "
             "| overhead ms (% of attn) | check rel. L2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["shape"], r["lists"], not r["dense"], -r.get("target_density", 2),
                                           BACKEND_ORDER.index(r["backend"]))):
        vs_dense = (f"{row['speedup_vs_dense']:.2f}x ({row['dense_baseline']})"
                    if row.get("speedup_vs_dense") is not None else "")
        vs_flex = f"{row['speedup_vs_flex']:.2f}x" if row.get("speedup_vs_flex") is not None else ""
        overhead = (f"{row['overhead_ms']:.3f} ({row['overhead_pct']:.1f}%)" if row.get("overhead_ms") is not None
                    else "")
        check = (f"{row['check_rel_l2']:.1e} vs {row['check_against']}" if row.get("check_rel_l2") is not None
                 else "")
        density = "dense" if row["dense"] else f"{row['density']:.3f}"
        lines.append(f"| {row['shape']} | {row['lists']} | {density} | {row['backend']} | {row['ms']:.3f} "
                     f"| {rate(row['effective_tflops'])} | {rate(row['computed_tflops'])} | {vs_dense} "
                     f"| {vs_flex} | {overhead} | {check} |")
    return "\n".join(lines + ["", LEGEND])


LEGEND = ("density: kept fraction of real (unpadded) token pairs. eff. TFLOP/s: dense FLOPs of the real tokens "
          "(4*B*H*N^2*D) x density / time. computed TFLOP/s: FLOPs of the 128x128 tiles the lists make the kernel "
          "run, padding included / time. vs dense: the fastest dense backend of the same inputs over this time. "
          "overhead: to_regions_and_pool + draft_select (global) + from_regions at this density (ours-fp8: "
          "to_regions_and_quantize_fp8, the layout pass with the e4m3 quantisation fused in, instead of "
          "to_regions_and_pool), in ms and as % of this row's attention time; for a flat sequence none (ours-fp8: "
          "quantize_fp8 alone). check: rel. L2 "
          "error of the output over real rows against the named reference.")
