"""The command line of `python -m draftattn_cuda.bench`."""
import argparse

from .backends import CPU_DENSE, CPU_SPARSE, GPU_DENSE, GPU_SPARSE
from .block_lists import LIST_KINDS
from .shapes import SHAPE_FORMS, parse_shape

GPU_DEFAULT_SHAPES = ("wan14b-720p", "hunyuan-720p")
# Small enough for the ATen reference in seconds, with partial edge regions and a text block.
CPU_DEFAULT_SHAPE = "2,16,40,2,64,40"
DEFAULT_DENSITIES = (1.0, 0.5, 0.25, 0.1)


def comma_list(text, name, convert):
    try:
        return [convert(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--{name} must be a comma list, got {text!r}")


def fractions(name):
    def parse(text):
        values = comma_list(text, name, float)
        if any(not 0 <= value <= 1 for value in values):
            raise argparse.ArgumentTypeError(f"--{name} values must be in [0, 1], got {text!r}")
        return values
    return parse


def choices(name, accepted):
    def parse(text):
        words = comma_list(text, name, str)
        unknown = [word for word in words if word not in accepted]
        if unknown:
            raise argparse.ArgumentTypeError(f"--{name}: unknown {unknown}; choose from {list(accepted)}")
        return words
    return parse


def build_parser(description):
    parser = argparse.ArgumentParser(prog="python -m draftattn_cuda.bench", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to run")
    what.add_argument("--shape", action="append", metavar="SHAPE",
                      help=f"repeatable: {SHAPE_FORMS} (default on a GPU: {', '.join(GPU_DEFAULT_SHAPES)}; "
                           f"on the CPU: {CPU_DEFAULT_SHAPE})")
    what.add_argument("--batch", type=int, default=1, help="batch of video shapes (a flat shape names its own)")
    what.add_argument("--text-first", action="store_true",
                      help="custom video shapes: text tokens before the video (CogVideoX), not after")
    kept = what.add_mutually_exclusive_group()
    kept.add_argument("--density", type=fractions("density"),
                      help="kept block fractions, comma list (default: 1,0.5,0.25,0.1)")
    kept.add_argument("--sparsity", type=fractions("sparsity"), help="or dropped block fractions (1 - density)")
    what.add_argument("--lists", type=choices("lists", LIST_KINDS), default=list(LIST_KINDS),
                      help="uniform: every row lists the same number of random blocks; draft: the paper's global "
                           "rule on video-like q, k (moving objects, repeated structures, 3D rotary) at each "
                           "sparsity (video shapes only). Default: both")
    what.add_argument("--backends", type=choices("backends", GPU_DENSE + GPU_SPARSE + CPU_DENSE),
                      help=f"comma list; GPU: {', '.join(GPU_SPARSE + GPU_DENSE)} (default all but ours-fp8); "
                           f"CPU: {', '.join(CPU_SPARSE + CPU_DENSE)} (default ours, sdpa-cpu)")
    what.add_argument("--fp8", action="store_true", help="also time ours-fp8 (e4m3 kernel on quantize_fp8 inputs)")
    what.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    what.add_argument("--cpu", action="store_true", help="run the CPU reference even when a GPU is present")
    what.add_argument("--seed", type=int, default=0)
    timing = parser.add_argument_group("timing (medians after warm-up)")
    timing.add_argument("--warmup-ms", type=float, default=25.0, help="warm-up time per case (at least one call)")
    timing.add_argument("--rep-ms", type=float, default=100.0, help="timed calls fill this long ...")
    timing.add_argument("--min-reps", type=int, help="... with at least this many calls (default: 5 on a GPU, 3 on "
                                                     "the CPU)")
    timing.add_argument("--cuda-graphs", action="store_true",
                        help="capture ours, ours-fp8 and the drafting ops in CUDA graphs (no launch overhead)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the rows and the run's metadata as JSON")
    out.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    out.add_argument("--markdown", metavar="PATH", help="write the Markdown table to a file too")
    out.add_argument("--plot", metavar="DIR", help="write PNG plots (time, effective TFLOP/s vs sparsity) into DIR")
    out.add_argument("--plot-from", metavar="JSON", help="no benchmark: print the table of a saved --json file "
                                                         "and, with --plot, plot it (no GPU needed)")
    return parser


def parse_args(argv, description=None):
    parser = build_parser(description)
    args = parser.parse_args(argv)
    if args.plot_from:
        return args
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    if args.min_reps is not None and args.min_reps < 1:
        parser.error(f"--min-reps must be >= 1, got {args.min_reps}")
    densities = [1.0 - s for s in args.sparsity] if args.sparsity else args.density or list(DEFAULT_DENSITIES)
    if any(d <= 0 for d in densities):
        parser.error("density must be > 0 (sparsity < 1): a case needs at least one block per row")
    args.densities = densities
    try:
        args.shapes = [parse_shape(text, args.batch, args.text_first) for text in args.shape or []]
    except ValueError as error:
        parser.error(str(error))
    if args.lists == ["draft"] and args.shapes and not any(shape.layout for shape in args.shapes):
        parser.error("--lists draft needs a video shape (a model name or frames,height,width,heads,head_dim"
                         "[,text_len]); flat batch,heads,tokens,head_dim shapes have no latent grid to draft from")
    return args


def resolve_backends(args, on_gpu):
    """(dense, sparse) backend names for this device; raises ValueError for a backend it does not have."""
    dense_names, sparse_names = (GPU_DENSE, GPU_SPARSE) if on_gpu else (CPU_DENSE, CPU_SPARSE)
    if args.backends is None:
        chosen = list(dense_names + sparse_names)
        chosen.remove("ours-fp8")
    else:
        chosen = list(args.backends)
    if args.fp8 and "ours-fp8" not in chosen:
        chosen.append("ours-fp8")
    unavailable = [name for name in chosen if name not in dense_names + sparse_names]
    if unavailable:
        where = "a GPU" if on_gpu else "the CPU path"
        raise ValueError(f"--backends: {unavailable} not available on {where}; choose from "
                         f"{list(sparse_names + dense_names)}")
    return [n for n in dense_names if n in chosen], [n for n in sparse_names if n in chosen]
