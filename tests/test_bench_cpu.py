"""The speed benchmark's CPU side: command line, block lists and Flex masks, CSV/JSON, plots, the CPU run."""
import csv
import io
import json

import pytest
import torch

from draftattn_cuda import bench
from draftattn_cuda.benchmark.backends import flex_block_mask
from draftattn_cuda.benchmark.block_lists import block_lists, list_statistics
from draftattn_cuda.benchmark.checks import real_rows
from draftattn_cuda.benchmark.inputs import case_inputs
from draftattn_cuda.benchmark.options import parse_args, resolve_backends
from draftattn_cuda.benchmark.progress import Progress
from draftattn_cuda.benchmark.report import FIELDS, add_speedups, markdown_table, read_json, write_csv, write_json
from draftattn_cuda.benchmark.shapes import MODEL_SHAPES, parse_shape
from draftattn_cuda.benchmark.timing import Timer
from draftattn_cuda.fidelity.blocks import lists_to_keep

FAST = ["--cpu", "--min-reps", "1", "--rep-ms", "0", "--warmup-ms", "0"]


def seed_of(rng):
    return int(torch.randint(0, 2**31, (1,), generator=rng))


def test_shapes_named_video_and_flat():
    wan = parse_shape("wan14b-720p")
    assert (wan.heads, wan.tokens, wan.num_blocks, wan.padded_tokens) == (40, 75600, 591, 591 * 128)
    hunyuan = parse_shape("hunyuan-720p", batch=2)
    assert (hunyuan.batch, hunyuan.tokens, hunyuan.layout.text_blocks) == (2, 33 * 45 * 80 + 256, 2)
    assert parse_shape("cogvideox5b-480p").layout.text_first
    custom = parse_shape("3,20,40,4,64,30", text_first=True)
    assert custom.layout.text_first and custom.tokens == 3 * 20 * 40 + 30 and custom.heads == 4
    assert custom.num_blocks == 3 * 2 * 2 + 7 + 1  # full regions, ceil(3 * (800 - 4 * 128) / 128) edge, 1 text
    flat = parse_shape("2,3,1000,128")
    assert (flat.batch, flat.heads, flat.tokens, flat.num_blocks, flat.layout) == (2, 3, 1000, 8, None)
    assert flat.block_lens().tolist() == [128] * 7 + [1000 - 7 * 128]
    assert len(MODEL_SHAPES) == 6
    for bad in ("wan", "1,2,3", "1,2,0,64", "1,2,3,4,5,6,7", "3,20,40,4,64,-1"):
        with pytest.raises(ValueError, match="--shape must be one of"):
            parse_shape(bad)


def test_cli_parsing_and_backend_choice(capsys):
    args = parse_args(["--sparsity", "0.5,0.9", "--shape", "wan14b-720p", "--shape", "1,2,300,64",
                       "--backends", "ours,cudnn", "--fp8"])
    assert args.densities == pytest.approx([0.5, 0.1])
    assert [s.name for s in args.shapes] == ["wan14b-720p", "1,2,300,64"]
    assert resolve_backends(args, on_gpu=True) == (["cudnn"], ["ours", "ours-fp8"])
    with pytest.raises(ValueError, match="not available on the CPU path"):
        resolve_backends(args, on_gpu=False)
    defaults = parse_args([])
    assert defaults.densities == [1.0, 0.5, 0.25, 0.1] and defaults.lists == ["uniform", "draft"]
    assert resolve_backends(defaults, on_gpu=True) == (["cudnn", "fa2"], ["ours", "flex"])
    assert resolve_backends(defaults, on_gpu=False) == (["sdpa-cpu"], ["ours"])
    for argv, message in ((["--density", "0.5", "--sparsity", "0.5"], "not allowed with"),
                          (["--density", "1.5"], "must be in"), (["--sparsity", "1"], "must be > 0"),
                          (["--backends", "ours,tensorrt"], "unknown"), (["--lists", "draft", "--shape", "1,2,300,64"],
                                                                          "needs a video shape"),
                          (["--shape", "nope"], "--shape must be one of")):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("text", ["2,12,40,2,64,40", "1,2,300,64"])
def test_flex_mask_keeps_the_listed_blocks_and_drops_padding_keys(rng, text):
    """The BlockMask's own fields, read as the compiled kernel reads them (listed blocks only; mask_mod on
    partial blocks only), allow exactly the token pairs sparse_attn computes."""
    shape = parse_shape(text, text_first=True)
    inputs = case_inputs(shape, False, torch.float32, torch.device("cpu"), seed_of(rng))
    kv_indices, kv_counts = block_lists("uniform", shape, inputs, 0.4, rng)
    mask = flex_block_mask(shape, kv_indices, kv_counts)
    blocks = lists_to_keep(mask.kv_indices, mask.kv_num_blocks)
    full = lists_to_keep(mask.full_kv_indices, mask.full_kv_num_blocks)
    assert not (blocks & full).any()
    assert ((blocks | full) == lists_to_keep(kv_indices, kv_counts)).all()
    rows = torch.arange(shape.padded_tokens)
    zero = torch.tensor(0)
    by_mask_mod = mask.mask_mod(zero, zero, rows[:, None], rows[None, :]).expand(len(rows), len(rows))
    block_of = rows // 128
    allowed = full[..., block_of][..., block_of, :] | (blocks[..., block_of][..., block_of, :] & by_mask_mod)
    wanted = lists_to_keep(kv_indices, kv_counts)[..., block_of][..., block_of, :] & real_rows(shape, "cpu")
    real = real_rows(shape, "cpu")
    assert (allowed[:, :, real] == wanted[:, :, real]).all()


def test_list_statistics_count_real_token_pairs(rng):
    shape = parse_shape("2,12,40,2,64,40")  # 2 x 224 edge tokens in 4 edge blocks, a partial text block
    inputs = case_inputs(shape, True, torch.float16, torch.device("cpu"), seed_of(rng))
    kv_indices, kv_counts = block_lists("draft", shape, inputs, 0.3, rng)
    stats = list_statistics(shape, kv_indices, kv_counts)
    lens = shape.block_lens().double()
    keep = lists_to_keep(kv_indices, kv_counts).double()
    pairs = (lens[:, None] * lens[None, :] * keep).sum((-1, -2)).mean() / shape.tokens**2
    assert stats["density"] == pytest.approx(pairs.item())
    assert stats["computed_blocks"] == int(keep.sum())
    assert stats["block_density"] == pytest.approx(keep.mean().item())
    assert (keep.diagonal(dim1=-2, dim2=-1) == 1).all()


def test_timer_calls_first_estimate_and_reps():
    calls = []
    assert Timer("cpu", warmup_ms=0, rep_ms=0, min_reps=4).median_ms(lambda: calls.append(1)) >= 0
    assert len(calls) == 1 + 1 + 4


def test_progress_prints_one_line_per_case_off_a_terminal():
    stream = io.StringIO()
    with Progress(2, stream) as progress:
        progress.step("first")
        progress.step("second")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[....") and "1/2" in lines[0] and lines[0].endswith(" first")
    assert "2/2" in lines[1] and lines[2].startswith("2/2 cases in")


def sample_rows():
    base = {"shape": "s", "lists": "uniform", "dtype": "bf16", "batch": 1, "heads": 2, "head_dim": 64,
            "tokens": 300, "padded_tokens": 300, "num_blocks": 3}
    return [dict(base, backend="cudnn", dense=True, density=1.0, block_density=1.0, ms=2.0, effective_tflops=1.0,
                 computed_tflops=1.0),
            dict(base, backend="fa2", dense=True, density=1.0, block_density=1.0, ms=4.0, effective_tflops=0.5,
                 computed_tflops=0.5),
            dict(base, backend="ours", dense=False, target_density=0.5, density=0.45, block_density=0.5, ms=0.5,
                 effective_tflops=1.8, computed_tflops=2.0, overhead_ms=0.1, overhead_pct=20.0),
            dict(base, backend="flex", dense=False, target_density=0.5, density=0.45, block_density=0.5, ms=1.0,
                 effective_tflops=0.9, computed_tflops=1.0, overhead_ms=0.1, overhead_pct=10.0)]


def test_speedups_csv_json_and_markdown(tmp_path):
    rows = add_speedups(sample_rows())
    ours = rows[2]
    assert ours["speedup_vs_dense"] == 4.0 and ours["dense_baseline"] == "cudnn" and ours["speedup_vs_flex"] == 2.0
    assert "speedup_vs_flex" not in rows[3] and rows[1]["speedup_vs_dense"] == 0.5
    write_csv(tmp_path / "rows.csv", rows)
    read = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert list(read[0]) == list(FIELDS) and len(read) == 4
    assert float(read[2]["speedup_vs_flex"]) == 2.0 and read[0]["target_density"] == ""
    write_json(tmp_path / "rows.json", {"device": "test"}, rows)
    assert read_json(tmp_path / "rows.json") == ({"device": "test"}, rows)
    (tmp_path / "other.json").write_text(json.dumps({"results": []}))
    with pytest.raises(ValueError, match="not a benchmark JSON"):
        read_json(tmp_path / "other.json")
    table = markdown_table(rows).splitlines()
    assert table[2].startswith("| s | uniform | dense | cudnn | 2.000 |")
    assert "| 4.00x (cudnn) | 2.00x | 0.100 (20.0%) |" in table[4]


def test_plot_from_json_writes_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "rows.json"
    write_json(path, {"device": "test", "command": "python -m draftattn_cuda.bench"}, add_speedups(sample_rows()))
    bench.main(["--plot-from", str(path), "--plot", str(tmp_path / "plots")])
    printed = capsys.readouterr().out
    png = tmp_path / "plots" / "speed_s_uniform.png"
    assert f"wrote {png}" in printed and png.read_bytes()[:4] == b"\x89PNG"
    assert printed.rstrip().splitlines()[-1].startswith("density: kept fraction")


def test_cpu_run_writes_checked_rows(tmp_path, capsys):
    argv = FAST + ["--shape", "2,12,40,2,64,40", "--density", "0.3", "--fp8", "--seed", "3",
                   "--json", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv")]
    bench.main(argv)
    printed = capsys.readouterr().out
    assert printed.startswith("reproduce: python -m draftattn_cuda.bench --cpu --min-reps 1")
    assert "--cpu given: running the exact CPU reference" in printed
    meta, rows = read_json(tmp_path / "b.json")
    assert meta["command"].endswith("b.csv") and meta["failures"] == []
    assert {(r["lists"], r["backend"]) for r in rows} == {(lists, backend) for lists in ("uniform", "draft")
                                                         for backend in ("sdpa-cpu", "ours", "ours-fp8")}
    for row in rows:
        assert row["ms"] > 0 and row["effective_tflops"] > 0
        if row["dense"]:
            continue
        assert 0 < row["density"] < 1 and row["overhead_ms"] > 0 and row["check_against"] == "fp32 under the same mask"
        assert row["check_rel_l2"] < (6e-2 if row["backend"] == "ours-fp8" else 1e-2)
        assert row["computed_tflops"] > row["effective_tflops"]  # padding rows and partial blocks are computed too
    assert len(list(csv.DictReader((tmp_path / "b.csv").open()))) == len(rows)
    assert "| shape | lists | density | backend |" in printed
