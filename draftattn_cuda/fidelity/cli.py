"""Command line of the fidelity harness: `python -m draftattn_cuda.fidelity`."""
import argparse
import json
import shlex
import sys
import time

import torch

from ..benchmark.options import choices
from ..benchmark.progress import Progress
from ..benchmark.shapes import VIDEO_SHAPE_FORMS, parse_shape
from .evaluate import METHODS, evaluate_case
from .inputs import SCENES
from .report import markdown_tables, summarise, write_plots

DEFAULT_SHAPE = "5,24,32,2,64"


def number_list(kind):
    def parse(text):
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__}s, got {text!r}")
    return parse


def video_shape(text):
    try:
        shape = parse_shape(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error))
    if shape.layout is None:
        raise argparse.ArgumentTypeError(f"--shape needs a latent grid (a model name or frames,height,width,heads,"
                                         f"head_dim[,text_len]), not a flat sequence: got {text!r}")
    if shape.head_dim not in (64, 128):
        raise argparse.ArgumentTypeError(f"--shape head_dim must be 64 or 128 (sparse_attn), got {shape.head_dim}")
    return shape


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m draftattn_cuda.fidelity",
        description="Block-selection methods at equal density against exact dense fp32 attention, on synthetic "
                    "video-like q, k, v. sparse_attn runs on --device: the CPU reference, or the CUDA kernel.")
    parser.add_argument("--shape", action="append", type=video_shape, metavar="NAME|F,H,W,HEADS,D[,TEXT]",
                        help=f"repeatable: {VIDEO_SHAPE_FORMS}; text follows the video "
                             f"(default: {DEFAULT_SHAPE}, small enough for the CPU)")
    parser.add_argument("--heads", type=int, help="heads to generate per shape (default: the shape's); "
                                                  "fewer heads make full model shapes cheaper, heads are i.i.d.")
    parser.add_argument("--device", default="cpu", help="where inputs, selection and sparse_attn run: cpu or cuda")
    parser.add_argument("--seeds", type=number_list(int), default=[0, 1, 2], help="comma list")
    parser.add_argument("--density", type=number_list(float), default=[0.1, 0.25, 0.5],
                        help="target kept block fractions, comma list")
    parser.add_argument("--sharpness", type=number_list(float), default=[1.0, 2.0],
                        help="factors on q (peakier attention), comma list")
    parser.add_argument("--scenes", type=choices("scenes", SCENES), default=list(SCENES),
                        help="smooth: background field only; video: plus moving objects and repeated structures")
    parser.add_argument("--methods", type=choices("methods", METHODS), default=list(METHODS))
    parser.add_argument("--json", metavar="PATH", help="write every row and the seed means as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    parser.add_argument("--plot", metavar="DIR", help="write PNG plots (recall and rel. L2 vs density per method) "
                                                      "into DIR (needs matplotlib)")
    parser.add_argument("--plot-from", metavar="JSON", help="no evaluation: print the tables of a saved --json file "
                                                           "and, with --plot, plot it (e.g. a GPU run, elsewhere)")
    args = parser.parse_args(argv)
    if args.heads is not None and args.heads < 1:
        parser.error(f"--heads must be >= 1, got {args.heads}")
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible to torch")
    if any(not 0 < d <= 1 for d in args.density):
        parser.error(f"--density values must be in (0, 1], got {args.density}")
    return args


def replot(args):
    """Tables and plots of a saved run, in its own method and density order."""
    try:
        with open(args.plot_from) as file:
            summary = json.load(file)["summary"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"--plot-from: {args.plot_from} is not a fidelity JSON written by --json ({error})")
    methods = list(dict.fromkeys(entry["method"] for entry in summary))
    densities = sorted({entry["target_density"] for entry in summary})
    print(markdown_tables(summary, methods, densities))
    if args.plot:
        for path in write_plots(summary, methods, args.plot):
            print(f"wrote {path}")
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.plot_from:
        return replot(args)
    shapes = args.shape or [video_shape(DEFAULT_SHAPE)]
    for shape in shapes:
        print(shape.describe())
    print(f"fp16 inputs on {args.device}; sparse_attn "
          f"({'CUDA kernel' if args.device == 'cuda' else 'CPU reference'}) vs dense fp32 attention on the same inputs")
    start = time.perf_counter()
    rows = []
    cases = [(shape, scene, sharpness, seed) for shape in shapes for scene in args.scenes
             for sharpness in args.sharpness for seed in args.seeds]
    with Progress(len(cases)) as progress:
        for shape, scene, sharpness, seed in cases:
            progress.step(f"{shape.name}, scene {scene}, sharpness {sharpness:g}, seed {seed}")
            heads = args.heads or shape.heads
            for row in evaluate_case(shape.layout, heads, shape.head_dim, scene, sharpness, seed, args.density,
                                     args.methods, args.device):
                rows.append({"shape": shape.name, "heads": heads, **row})
    summary = summarise(rows)
    tables = markdown_tables(summary, args.methods, args.density)
    print("\n" + tables)
    print(f"{len(cases)} cases in {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"shapes": [shape.describe() for shape in shapes], "device": args.device,
                       "command": reproducing_command(argv), "rows": rows, "summary": summary}, file, indent=1)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(tables)
        print(f"wrote {args.markdown}")
    if args.plot:
        for path in write_plots(summary, args.methods, args.plot):
            print(f"wrote {path}")
    print("reproduce: " + reproducing_command(argv))
    return summary


def reproducing_command(argv):
    return shlex.join(["python", "-m", "draftattn_cuda.fidelity", *argv])
