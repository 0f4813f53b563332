"""bench/bench_e2e.py in its CPU smoke mode (--tiny) and its depth extrapolation."""
import importlib.util
import pathlib

import pytest
import torch

pytest.importorskip("diffusers")

BENCH_PATH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "bench_e2e.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_mode_prints_a_table_per_model(capsys):
    bench = load_bench()
    tables = bench.main(["--tiny", "--repeats", "1", "--sparsity", "0.5,0.9"])
    out = capsys.readouterr().out
    assert "CPU (reference ops)" in out and "bench_e2e.py --tiny" in out
    assert len(tables) == 2
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert [row.split(" | ")[0] for row in rows] == ["| dense, SDPA (CPU)", "| ours 50% sparse", "| ours 90% sparse"]
        densities = [float(row.split(" | ")[3]) for row in rows]
        assert densities[0] == 1.0 and all(0 < d < 1 for d in densities[1:])


def test_run_total_uses_the_dense_step_schedule():
    bench = load_bench()
    args = bench.parse_args(["--tiny", "--repeats", "1", "--sparsity", "0.9", "--steps", "10", "--dense-fraction", "0.3"])
    rows, n_dense = bench.bench_model("wan-tiny", args, torch.device("cpu"), bench.Clock(torch.device("cpu")))
    assert n_dense == 3
    (_, dense_step, _, _, dense_total), (_, sparse_step, _, density, sparse_total) = rows
    assert dense_total == pytest.approx(10 * dense_step)
    assert sparse_total == pytest.approx(3 * dense_step + 7 * sparse_step)
    assert density < 1


def test_extrapolation_counts_dense_and_sparse_blocks_per_kind():
    bench = load_bench()
    model = bench.build_model("hunyuan-tiny", 3, "cpu")  # 3 dual- and 3 single-stream blocks
    per_block = [(10, 1), (10, 1), (20, 2), (30, 3), (30, 3), (30, 3)]
    step = 200  # 70 ms outside the blocks
    # The full tiny config: 3 dual-stream blocks (0 and 1 dense) and 1 single-stream block.
    total, attention = bench.full_depth("hunyuan-tiny", model, step, per_block, {0, 1}, layers=3)
    assert (total, attention) == (70 + 10 + 10 + 20 + 30, 1 + 1 + 2 + 3)
    total, attention = bench.full_depth("hunyuan-tiny", model, step, per_block, None, layers=3)
    assert total == pytest.approx(70 + 3 * 40 / 3 + 30) and attention == pytest.approx(3 * 4 / 3 + 3)
    assert bench.full_depth("hunyuan-tiny", model, step, per_block, {0}, layers=None) == (step, 13)
    shallow = bench.build_model("hunyuan-tiny", 2, "cpu")  # both dual-stream blocks are dense ones
    with pytest.raises(SystemExit, match="no sparse dual-stream block"):
        bench.full_depth("hunyuan-tiny", shallow, step, per_block[:2] + per_block[3:5], {0, 1}, layers=2)


def test_unknown_model_is_refused():
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.parse_args(["--model", "sora"])
