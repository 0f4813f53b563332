"""Seed-averaged summaries of fidelity rows as Markdown tables and optional PNG plots."""
import statistics
from collections import defaultdict

METRICS = {"recall": "attention-mass recall", "rel_l2": "relative L2 error", "cosine": "cosine similarity"}


def summarise(rows):
    """Mean and spread over seeds per (scene, sharpness, method, target density)."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["scene"], row["sharpness"], row["method"], row["target_density"])].append(row)
    summary = []
    for (scene, sharpness, method, target), group in groups.items():
        entry = {"scene": scene, "sharpness": sharpness, "method": method, "target_density": target,
                 "seeds": len(group), "density": statistics.fmean(r["density"] for r in group)}
        for metric in METRICS:
            values = [r[metric] for r in group]
            entry[metric] = statistics.fmean(values)
            entry[metric + "_std"] = statistics.pstdev(values)
        summary.append(entry)
    return summary


def markdown_tables(summary, methods, densities):
    """One table per (scene, sharpness): methods down, target densities across, each cell
    'recall / rel. L2 / cosine', plus the density each method actually kept."""
    lines = []
    cases = sorted({(e["scene"], e["sharpness"]) for e in summary})
    lookup = {(e["scene"], e["sharpness"], e["method"], e["target_density"]): e for e in summary}
    for scene, sharpness in cases:
        lines += [f"scene `{scene}`, sharpness {sharpness:g}: recall / rel. L2 / cosine (mean over "
                  f"{lookup[(scene, sharpness, methods[0], densities[0])]['seeds']} seeds)", "",
                  "| method | " + " | ".join(f"density {d:g}" for d in densities) + " | kept density |",
                  "| --- | " + " | ".join("---" for _ in densities) + " | --- |"]
        for method in methods:
            cells = [lookup[(scene, sharpness, method, d)] for d in densities]
            lines.append(f"| {method} | " + " | ".join(f"{c['recall']:.3f} / {c['rel_l2']:.3f} / {c['cosine']:.3f}"
                                                      for c in cells)
                         + " | " + "/".join(f"{c['density']:.3f}" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_plots(summary, methods, prefix):
    """recall and rel. L2 vs kept density per method, one PNG per (scene, sharpness); returns the paths."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping the PNG plots (pip install matplotlib to get them).")
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot

    paths = []
    for scene, sharpness in sorted({(e["scene"], e["sharpness"]) for e in summary}):
        figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
        for method in methods:
            points = sorted((e["density"], e["recall"], e["rel_l2"]) for e in summary
                            if (e["scene"], e["sharpness"], e["method"]) == (scene, sharpness, method))
            axes[0].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
            axes[1].plot([p[0] for p in points], [p[2] for p in points], marker="o", label=method)
        for axis, metric in zip(axes, ("recall", "rel_l2")):
            axis.set_xlabel("kept density")
            axis.set_ylabel(METRICS[metric])
            axis.grid(alpha=0.3)
        axes[0].legend()
        figure.suptitle(f"scene {scene}, sharpness {sharpness:g}")
        path = f"{prefix}_{scene}_sharpness{sharpness:g}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        pyplot.close(figure)
        paths.append(path)
    return paths
