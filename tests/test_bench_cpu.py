"""The main job runs on a machine without a GPU and reports what it measured."""
import json

from draftattn_cuda import bench


def test_cpu_bench_reports_density_error_and_time(tmp_path, capsys):
    path = tmp_path / "bench.json"
    bench.main(["--cpu", "--sparsity", "0.8", "--seed", "3", "--json", str(path)])
    printed = capsys.readouterr().out
    assert "reproduce: python -m draftattn_cuda.bench --cpu" in printed and "CPU reference" in printed
    (row,) = json.loads(path.read_text())["results"]
    assert 0.0 < row["density"] < 1.0
    assert row["rel_l2_vs_masked_dense"] < 1e-2 < row["rel_l2_vs_dense"]
    assert row["seconds"] > 0
