"""Seed-averaged summaries of fidelity rows as Markdown tables and optional PNG plots."""
import os
import statistics
from collections import defaultdict

from ..benchmark.plots import load_pyplot, safe_file_name

METRICS = {"recall": "attention-mass recall", "rel_l2": "relative L2 error", "cosine": "cosine similarity"}
CASE_KEYS = ("shape", "scene", "sharpness")


def summarise(rows):
    """Mean and spread over seeds per (shape, scene, sharpness, method, target density)."""
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[key] for key in CASE_KEYS + ("method", "target_density"))].append(row)
    summary = []
    for (shape, scene, sharpness, method, target), group in groups.items():
        entry = {"shape": shape, "scene": scene, "sharpness": sharpness, "method": method, "target_density": target,
                 "seeds": len(group), "density": statistics.fmean(r["density"] for r in group),
                 "kept_blocks": statistics.fmean(r["kept_blocks"] for r in group),
                 "budget_blocks": statistics.fmean(r["budget_blocks"] for r in group)}
        for metric in METRICS:
            values = [r[metric] for r in group]
            entry[metric] = statistics.fmean(values)
            entry[metric + "_std"] = statistics.pstdev(values)
        summary.append(entry)
    return summary


def cases_of(summary):
    return sorted({tuple(e[key] for key in CASE_KEYS) for e in summary})


def best_selection(cells):
    """Which non-oracle method recalls most at one density among those within 2% of the block budget
    (per-row rules move in steps of a block per row and can overshoot), and its margin over the
    best static mask."""
    fair = {m: c for m, c in cells.items() if m != "oracle" and c["kept_blocks"] <= 1.02 * c["budget_blocks"]}
    over = sorted(m for m, c in cells.items() if m != "oracle" and m not in fair)
    if not fair:
        return ""
    best = max(fair, key=lambda method: fair[method]["recall"])
    text = f"{best} ({fair[best]['recall']:.3f})"
    static = [c["recall"] for m, c in fair.items() if m in ("local", "radial", "random")]
    drafted = [c["recall"] for m, c in fair.items() if m in ("global", "topk", "topp")]
    if static and drafted:
        margin = max(drafted) - max(static)
        text += f"; best draft rule {'+' if margin >= 0 else '-'}{abs(margin):.3f} recall vs the best static mask"
    if over:
        text += f" ({', '.join(over)} left out: over the block budget)"
    return text


def markdown_tables(summary, methods, densities):
    """One table per (shape, scene, sharpness): methods down, target densities across, each cell
    'recall / rel. L2 / cosine', the density each method actually kept, and the best method per density."""
    lines = []
    lookup = {tuple(e[key] for key in CASE_KEYS + ("method", "target_density")): e for e in summary}
    for case in cases_of(summary):
        shape, scene, sharpness = case
        seeds = lookup[case + (methods[0], densities[0])]["seeds"]
        lines += [f"shape `{shape}`, scene `{scene}`, sharpness {sharpness:g}: recall / rel. L2 / cosine "
                  f"(mean over {seeds} seeds)", "",
                  "| method | " + " | ".join(f"density {d:g}" for d in densities) + " | kept density |",
                  "| --- | " + " | ".join("---" for _ in densities) + " | --- |"]
        for method in methods:
            cells = [lookup[case + (method, d)] for d in densities]
            lines.append(f"| {method} | " + " | ".join(f"{c['recall']:.3f} / {c['rel_l2']:.3f} / {c['cosine']:.3f}"
                                                      for c in cells)
                         + " | " + "/".join(f"{c['density']:.3f}" for c in cells) + " |")
        lines.append("")
        for d in densities:
            verdict = best_selection({m: lookup[case + (m, d)] for m in methods})
            if verdict:
                lines.append(f"- density {d:g}: best without the oracle: {verdict}")
        lines.append("")
    return "\n".join(lines)


def write_plots(summary, methods, directory):
    """recall and rel. L2 vs kept density per method, one PNG per (shape, scene, sharpness); returns the paths."""
    pyplot = load_pyplot()
    if pyplot is None:
        return []
    os.makedirs(directory, exist_ok=True)
    paths = []
    for shape, scene, sharpness in cases_of(summary):
        figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
        for method in methods:
            points = sorted((e["density"], e["recall"], e["rel_l2"]) for e in summary
                            if (e["shape"], e["scene"], e["sharpness"], e["method"]) == (shape, scene, sharpness,
                                                                                          method))
            axes[0].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
            axes[1].plot([p[0] for p in points], [p[2] for p in points], marker="o", label=method)
        for axis, metric in zip(axes, ("recall", "rel_l2")):
            axis.set_xlabel("kept density (token pairs)")
            axis.set_ylabel(METRICS[metric])
            axis.grid(alpha=0.3)
        axes[0].legend()
        figure.suptitle(f"{shape}, scene {scene}, sharpness {sharpness:g}")
        path = os.path.join(directory, safe_file_name(f"fidelity_{shape}_{scene}_sharpness{sharpness:g}") + ".png")
        figure.savefig(path, dpi=120, bbox_inches="tight")
        pyplot.close(figure)
        paths.append(path)
    return paths
