"""Command line of the fidelity harness: `python -m draftattn_cuda.fidelity`."""
import argparse
import json
import shlex
import sys
import time

import draftattn_cuda as da

from .evaluate import METHODS, evaluate_case
from .inputs import SCENES
from .report import markdown_tables, summarise, write_plots


def number_list(kind):
    def parse(text):
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__}s, got {text!r}")
    return parse


def word_list(choices):
    def parse(text):
        words = text.split(",")
        unknown = [word for word in words if word not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(choices)}")
        return words
    return parse


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m draftattn_cuda.fidelity",
        description="Block-selection methods at equal density against exact dense fp32 attention, on synthetic "
                    "video-like q, k, v (sparse_attn on the device of the build: the CPU reference here).")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=24, help="latent rows per frame")
    parser.add_argument("--width", type=int, default=32, help="latent columns per frame")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64, choices=(64, 128))
    parser.add_argument("--text-len", type=int, default=0, help="text tokens after the video (dense rows and columns)")
    parser.add_argument("--seeds", type=number_list(int), default=[0, 1, 2], help="comma list")
    parser.add_argument("--density", type=number_list(float), default=[0.1, 0.25, 0.5],
                        help="target kept block fractions, comma list")
    parser.add_argument("--sharpness", type=number_list(float), default=[1.0, 2.0],
                        help="factors on q (peakier attention), comma list")
    parser.add_argument("--scenes", type=word_list(SCENES), default=list(SCENES),
                        help="smooth: background field only; video: plus moving objects and repeated structures")
    parser.add_argument("--methods", type=word_list(METHODS), default=list(METHODS))
    parser.add_argument("--json", metavar="PATH", help="write every row and the seed means as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    parser.add_argument("--plots", metavar="PREFIX", help="write PNG plots PREFIX_<scene>_sharpness<s>.png "
                                                          "(needs matplotlib)")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    layout = da.VideoLayout(args.frames, args.height, args.width, text_len=args.text_len)
    print(f"{layout}: {layout.tokens} tokens, {layout.num_blocks} blocks of 128; {args.heads} heads, head_dim "
          f"{args.head_dim}; fp16 inputs, sparse_attn vs dense fp32 attention on the same inputs")
    start = time.perf_counter()
    rows = []
    cases = [(scene, sharpness, seed) for scene in args.scenes for sharpness in args.sharpness for seed in args.seeds]
    for number, (scene, sharpness, seed) in enumerate(cases, 1):
        print(f"[{number}/{len(cases)}] scene {scene}, sharpness {sharpness:g}, seed {seed}", flush=True)
        rows += evaluate_case(layout, args.heads, args.head_dim, scene, sharpness, seed, args.density, args.methods)
    summary = summarise(rows)
    tables = markdown_tables(summary, args.methods, args.density)
    print("\n" + tables)
    print(f"{len(cases)} cases in {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"layout": repr(layout), "heads": args.heads, "head_dim": args.head_dim, "rows": rows,
                       "summary": summary}, file, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(tables)
    if args.plots:
        for path in write_plots(summary, args.methods, args.plots):
            print(f"wrote {path}")
    print("reproduce: python -m draftattn_cuda.fidelity " + shlex.join(argv))
    return summary
