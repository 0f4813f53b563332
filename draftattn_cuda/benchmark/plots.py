"""PNG plots of benchmark rows (matplotlib, optional): time and effective TFLOP/s vs sparsity."""
import os
import re

# One colour per backend in every plot.
COLORS = {"ours": "C0", "ours-fp8": "C1", "flex": "C2", "cudnn": "C3", "fa2": "C4", "sdpa-cpu": "C5"}
MISSING = "matplotlib is not installed: no PNG plots (install it with `python3 -m pip install matplotlib`)"


def load_pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None after saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        print(MISSING)
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot
    return pyplot


def safe_file_name(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def write_speed_plots(rows, directory):
    """One PNG per (shape, block lists): ms and effective TFLOP/s against sparsity, a line per backend;
    dense backends are horizontal dashed lines. Returns the paths written."""
    pyplot = load_pyplot()
    if pyplot is None:
        return []
    os.makedirs(directory, exist_ok=True)
    paths = []
    for shape, lists in sorted({(row["shape"], row["lists"]) for row in rows}):
        case = [row for row in rows if (row["shape"], row["lists"]) == (shape, lists)]
        figure, (time_axis, rate_axis) = pyplot.subplots(1, 2, figsize=(11, 4.2))
        sparse_backends = sorted({row["backend"] for row in case if not row["dense"]})
        for backend in sparse_backends:
            points = sorted((1 - row["density"], row["ms"], row["effective_tflops"])
                            for row in case if row["backend"] == backend)
            sparsity = [point[0] for point in points]
            color = COLORS.get(backend)
            time_axis.plot(sparsity, [point[1] for point in points], marker="o", color=color, label=backend)
            rate_axis.plot(sparsity, [point[2] for point in points], marker="o", color=color, label=backend)
        for row in case:
            if row["dense"]:
                style = {"linestyle": "--", "color": COLORS.get(row["backend"]), "label": f"{row['backend']} (dense)"}
                time_axis.axhline(row["ms"], **style)
                rate_axis.axhline(row["effective_tflops"], **style)
        time_axis.set_yscale("log")
        time_axis.set_ylabel("time per call, ms (median)")
        rate_axis.set_ylabel("effective TFLOP/s (dense-equivalent x kept density)")
        for axis in (time_axis, rate_axis):
            axis.set_xlabel("sparsity (1 - kept token-pair density)")
            axis.grid(alpha=0.3)
        rate_axis.legend(fontsize=8)
        device = case[0].get("device", "")
        figure.suptitle(f"{shape}, {lists} block lists, {case[0]['dtype']}" + (f" — {device}" if device else ""))
        path = os.path.join(directory, safe_file_name(f"speed_{shape}_{lists}") + ".png")
        figure.savefig(path, dpi=120, bbox_inches="tight")
        pyplot.close(figure)
        paths.append(path)
    return paths
