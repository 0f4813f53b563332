"""Runs the benchmark cases and turns each timing into a result row."""
import torch

from .backends import DESCRIPTIONS, GRAPHABLE, dense_callable, flex_block_mask, flex_callable, ours_callable, \
    ours_fp8_callable
from .block_lists import block_lists, list_statistics
from .checks import masked_reference, real_rows, relative_l2
from .inputs import case_inputs
from .progress import Progress
from .timing import Timer

ops = torch.ops.draftattn
BLOCK_AREA = 128 * 128


def list_kinds_for(shape, kinds):
    """A flat sequence has no latent grid to draft from: it runs uniform lists only."""
    return kinds if shape.layout else [kind for kind in kinds if kind == "uniform"]


def case_count(shapes, kinds, dense, sparse, densities):
    return sum(len(dense) + len(densities) * len(sparse) for shape in shapes for _ in list_kinds_for(shape, kinds))


def drafting_callable(shape, inputs, sparsity):
    """What DraftAttention adds around the attention: region layout + pooling of q, k, v, the draft map
    and global selection, and the inverse layout of the output (q's region tensor stands in for it)."""
    layout = shape.layout

    def call():
        regions = ops.to_regions_and_pool(inputs.q, inputs.k, inputs.v, *layout.op_args)
        lists = ops.draft_select(regions[3], regions[4], "global", sparsity, 0.9, layout.text_blocks,
                                 layout.text_first)
        return lists, ops.from_regions(regions[0], *layout.op_args)
    return call


def fp8_drafting_callable(shape, inputs, sparsity):
    """What draft_attention(precision="fp8") adds around the attention: the fused layout + pooling +
    e4m3 quantisation pass, the draft map and global selection, and the inverse layout of the output
    (the precomputed region-major q stands in for it)."""
    layout = shape.layout

    def call():
        prepared = ops.to_regions_and_quantize_fp8(inputs.q, inputs.k, inputs.v, *layout.op_args)
        lists = ops.draft_select(prepared[6], prepared[7], "global", sparsity, 0.9, layout.text_blocks,
                                 layout.text_first)
        return lists, ops.from_regions(inputs.q_regions, *layout.op_args)
    return call


def flops(shape):
    """Dense attention FLOPs over the real tokens: QK^T and PV, 2 * 2 * B * H * N^2 * D."""
    return 4 * shape.batch * shape.heads * shape.tokens**2 * shape.head_dim


def result_row(shape, kind, backend, ms, dtype, density=1.0, block_density=1.0, computed_blocks=None, **extra):
    dense_flops = flops(shape)
    computed_flops = dense_flops if computed_blocks is None else 4 * shape.head_dim * BLOCK_AREA * computed_blocks
    return {"shape": shape.name, "batch": shape.batch, "heads": shape.heads, "head_dim": shape.head_dim,
            "tokens": shape.tokens, "padded_tokens": shape.padded_tokens, "num_blocks": shape.num_blocks,
            "dtype": dtype, "lists": kind, "backend": backend, "dense": computed_blocks is None,
            "density": density, "block_density": block_density, "ms": ms,
            "effective_tflops": dense_flops * density / ms / 1e9, "computed_tflops": computed_flops / ms / 1e9,
            **extra}


class Runner:
    """Times every backend on every (shape, list kind, density). A backend that fails (no kernel for the
    card, out of memory, a compile error) is reported in `failures` and the run goes on."""

    def __init__(self, args, device, dense, sparse):
        self.args, self.device, self.dense, self.sparse = args, torch.device(device), dense, sparse
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
        self.timer = Timer(device, args.warmup_ms, args.rep_ms, args.min_reps, args.cuda_graphs)
        self.failures = []
        self.flex = None
        if "flex" in sparse:
            from torch.nn.attention.flex_attention import flex_attention
            # One compiled FlexAttention per (shape, mask): past dynamo's recompile limit it would run
            # eagerly and materialise the whole score matrix.
            torch._dynamo.config.recompile_limit = 256
            self.flex = torch.compile(flex_attention, dynamic=False)

    def run(self, shapes, kinds, densities):
        rows = []
        with Progress(case_count(shapes, kinds, self.dense, self.sparse, densities)) as self.progress:
            for shape in shapes:
                print(shape.describe())
                if not shape.layout and "draft" in kinds:
                    print("  flat sequence: no latent grid to draft from, uniform block lists only")
                for kind in list_kinds_for(shape, kinds):
                    rows += self.run_lists(shape, kind, densities)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        return rows

    def timed(self, label, make_call, graphable=False):
        """(median ms, the callable) of what make_call() builds, or None after recording the failure."""
        self.progress.step(label)
        try:
            call = make_call()
            return self.timer.median_ms(call, graphable), call
        except Exception as error:  # noqa: BLE001  (any backend failure is reported, the run goes on)
            message = f"{label}: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
            print("  FAILED " + message)
            self.failures.append(message)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return None

    def run_lists(self, shape, kind, densities):
        """Rows of the dense backends and of every sparse backend at every density, on one set of inputs."""
        inputs = case_inputs(shape, kind == "draft", self.dtype, self.device, self.args.seed)
        rows = []
        for backend in self.dense:
            result = self.timed(f"{shape.name} {kind} dense {backend}", lambda: dense_callable(backend, inputs))
            if result:
                rows.append(result_row(shape, kind, backend, result[0], self.args.dtype))
        quantized = quantize_ms = None
        if "ours-fp8" in self.sparse:
            quantized = ops.quantize_fp8(inputs.q_regions, inputs.k_regions, inputs.v_regions)
            if not shape.layout:  # a video shape quantises inside its fp8 drafting pass (run_sparse)
                quantize_ms = self.timer.median_ms(lambda: ops.quantize_fp8(inputs.q_regions, inputs.k_regions,
                                                                            inputs.v_regions), graphable=True)
        generator = torch.Generator(self.device).manual_seed(self.args.seed)
        for density in densities:
            kv_indices, kv_counts = block_lists(kind, shape, inputs, density, generator)
            rows += self.run_sparse(shape, kind, density, inputs, kv_indices, kv_counts, quantized, quantize_ms)
        return rows

    def run_sparse(self, shape, kind, density, inputs, kv_indices, kv_counts, quantized, quantize_ms):
        """One row per sparse backend on the same block lists, with the drafting overhead and the checks."""
        stats = list_statistics(shape, kv_indices, kv_counts)
        drafting_ms = {}  # per backend
        if shape.layout:
            drafting_ms["ours"] = drafting_ms["flex"] = self.timer.median_ms(
                drafting_callable(shape, inputs, 1.0 - density), graphable=True)
            if "ours-fp8" in self.sparse:
                drafting_ms["ours-fp8"] = self.timer.median_ms(fp8_drafting_callable(shape, inputs, 1.0 - density),
                                                               graphable=True)
        block_lens = shape.block_lens(self.device) if shape.layout else None
        makers = {"ours": lambda: ours_callable(inputs, kv_indices, kv_counts, block_lens),
                  "ours-fp8": lambda: ours_fp8_callable(quantized, kv_indices, kv_counts, block_lens),
                  "flex": lambda: flex_callable(self.flex, inputs, flex_block_mask(shape, kv_indices, kv_counts))}
        outputs, rows = {}, []
        for backend in self.sparse:
            result = self.timed(f"{shape.name} {kind} density {density:g} {backend}", makers[backend],
                                backend in GRAPHABLE)
            if not result:
                continue
            ms, call = result
            outputs[backend] = call()
            drafting = drafting_ms.get(backend)
            extra = quantize_ms if backend == "ours-fp8" else None
            overhead = None if drafting is None and extra is None else (drafting or 0.0) + (extra or 0.0)
            rows.append(result_row(shape, kind, backend, ms, self.args.dtype, target_density=density, **stats,
                                   drafting_ms=drafting, quantize_ms=extra, overhead_ms=overhead,
                                   overhead_pct=None if overhead is None else 100 * overhead / ms))
        self.add_checks(rows, shape, inputs, kv_indices, kv_counts, outputs)
        return rows

    def add_checks(self, rows, shape, inputs, kv_indices, kv_counts, outputs):
        """Each sparse row's rel. L2 error over real rows: on the CPU against exact fp32 attention under the
        same mask; on a GPU against FlexAttention (ours, ours-fp8) or ours (Flex, and fp8 without Flex)."""
        real = real_rows(shape, self.device)
        if self.device.type == "cpu":
            exact = masked_reference(shape, inputs, kv_indices, kv_counts)
            references = {backend: ("fp32 under the same mask", exact) for backend in outputs}
        else:
            references = {}
            for backend in outputs:
                other = "flex" if backend != "flex" and "flex" in outputs else "ours" if backend != "ours" else None
                if other in outputs:
                    references[backend] = (other, outputs[other])
        for row in rows:
            if row["backend"] in references:
                against, reference = references[row["backend"]]
                row["check_rel_l2"] = relative_l2(outputs[row["backend"]], reference, real)
                row["check_against"] = against


def describe_backends(backends):
    return "\n".join(f"  {name}: {DESCRIPTIONS[name]}" for name in backends)
