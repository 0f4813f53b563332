"""`python -m draftattn_cuda.bench`: times block-sparse attention against dense and FlexAttention.

On a GPU: ours (torch.ops.draftattn.sparse_attn; --fp8 adds the e4m3 kernel) against cuDNN and
FlashAttention-2 dense SDPA and FlexAttention with the same block mask, in one process, on
model shapes laid out as regions (partial edge regions, text blocks), with uniform random or
drafted (paper's global rule) block lists; medians after warm-up. Without a GPU (or with
--cpu): the exact CPU reference on a small video, checked against fp32 attention.
Prints a Markdown table last; --json/--csv/--plot save results, --plot-from replots a JSON.
"""
import datetime
import shlex
import sys

import torch

from ..build_info import cuda_kernels_built
from .options import CPU_DEFAULT_SHAPE, GPU_DEFAULT_SHAPES, parse_args, resolve_backends
from .plots import write_speed_plots
from .report import add_speedups, markdown_table, read_json, write_csv, write_json
from .runner import Runner, describe_backends
from .shapes import parse_shape


def reproducing_command(argv):
    return shlex.join(["python", "-m", "draftattn_cuda.bench", *argv])


def device_and_reason(args):
    """('cuda', None) or ('cpu', why the CPU reference runs)."""
    if args.cpu:
        return "cpu", "--cpu given"
    if not torch.cuda.is_available():
        return "cpu", "no CUDA GPU found"
    return "cuda", None


def describe_device(device, reason):
    if device == "cpu":
        return (f"{reason}: running the exact CPU reference (ATen ops, not a kernel); times are the "
                f"reference's, not the kernel's")
    kernels = "built" if cuda_kernels_built() else "NOT built: the CUDA key runs the ATen reference"
    capability = "".join(map(str, torch.cuda.get_device_capability()))
    return f"GPU: {torch.cuda.get_device_name()} (sm_{capability}); draftattn CUDA kernels {kernels}"


def save_and_show(args, meta, rows):
    if args.json:
        write_json(args.json, meta, rows)
        print(f"wrote {args.json}")
    if args.csv:
        write_csv(args.csv, rows)
        print(f"wrote {args.csv}")
    for failure in meta.get("failures", []):
        print("FAILED " + failure)
    table = markdown_table(rows)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(table + "\n")
        print(f"wrote {args.markdown}")
    if args.plot:
        for path in write_speed_plots(rows, args.plot):
            print(f"wrote {path}")
    print("\n" + table)


def replot(args):
    try:
        meta, rows = read_json(args.plot_from)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--plot-from: {error}")
    print(f"{args.plot_from}: {len(rows)} rows from {meta.get('device', 'an unknown device')}, "
          f"command: {meta.get('command', 'unknown')}")
    save_and_show(args, meta, rows)
    return {"meta": meta, "rows": rows}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, __doc__)
    if args.plot_from:
        return replot(args)
    print("reproduce: " + reproducing_command(argv))
    device, reason = device_and_reason(args)
    try:
        dense, sparse = resolve_backends(args, device == "cuda")
    except ValueError as error:
        raise SystemExit(str(error))
    if args.min_reps is None:
        args.min_reps = 5 if device == "cuda" else 3
    description = describe_device(device, reason)
    print(description)
    if not args.shapes:
        defaults = GPU_DEFAULT_SHAPES if device == "cuda" else (CPU_DEFAULT_SHAPE,)
        args.shapes = [parse_shape(text, args.batch, args.text_first) for text in defaults]
    print(f"backends ({args.dtype}):\n" + describe_backends(dense + sparse))
    runner = Runner(args, device, dense, sparse)
    rows = runner.run(args.shapes, args.lists, args.densities)
    add_speedups(rows)
    for row in rows:
        row["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    meta = {"command": reproducing_command(argv), "device": rows[0]["device"] if rows else device,
            "description": description, "torch": torch.__version__, "cuda_kernels_built": cuda_kernels_built(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "timing": {"warmup_ms": args.warmup_ms, "rep_ms": args.rep_ms, "min_reps": args.min_reps,
                       "cuda_graphs": args.cuda_graphs, "statistic": "median"},
            "failures": runner.failures}
    save_and_show(args, meta, rows)
    return {"meta": meta, "rows": rows}
