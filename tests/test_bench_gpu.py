"""The speed benchmark and the fidelity harness on a GPU, on small shapes (skip without a CUDA build)."""
import pytest
import torch

from draftattn_cuda import bench
from draftattn_cuda.benchmark.report import read_json
from draftattn_cuda.fidelity.evaluate import select_blocks
from draftattn_cuda.fidelity.blocks import block_budget
from draftattn_cuda.fidelity.inputs import video_qkv
from draftattn_cuda.fidelity.metrics import dense_reference, mass_recall, relative_l2, sparse_output
from draftattn_cuda.layout import VideoLayout

pytestmark = pytest.mark.requires_cuda_build
FAST = ["--min-reps", "2", "--rep-ms", "1", "--warmup-ms", "1"]


@pytest.mark.parametrize("shape", ["2,24,40,2,128,40", "1,2,1000,64"])
def test_every_backend_runs_and_agrees_with_flex(tmp_path, shape):
    path = tmp_path / "bench.json"
    bench.main(FAST + ["--shape", shape, "--density", "1,0.3", "--fp8", "--cuda-graphs", "--json", str(path)])
    meta, rows = read_json(path)
    assert meta["failures"] == []
    backends = {row["backend"] for row in rows}
    assert backends == {"cudnn", "fa2", "ours", "ours-fp8", "flex"}
    for row in rows:
        assert row["ms"] > 0 and row["speedup_vs_dense"] > 0
        if row["backend"] in ("ours", "flex"):
            assert row["check_rel_l2"] < 2e-2, row
        if row["backend"] == "ours-fp8":
            assert row["check_rel_l2"] < 1e-1, row
        if row["backend"] == "ours" and shape.count(",") == 5:  # a video shape: drafting is timed
            assert row["overhead_ms"] > 0 and row["drafting_ms"] > 0


def test_fidelity_on_the_gpu_matches_the_cpu_on_the_same_inputs(device="cuda"):
    layout = VideoLayout(3, 16, 40, text_len=40)
    qkv = video_qkv(layout, heads=2, head_dim=128, scene="video", seed=0)
    gpu_qkv = [t.to(device) for t in qkv]
    out_cpu, mass_cpu = dense_reference(*qkv, layout)
    out_gpu, mass_gpu = dense_reference(*gpu_qkv, layout)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(mass_gpu.cpu(), mass_cpu, atol=1e-3, rtol=1e-3)
    budget = block_budget(layout, 0.3)
    pooled = {d: [torch.ops.draftattn.mean_pool(t, *layout.op_args) for t in inputs[:2]]
              for d, inputs in (("cpu", qkv), (device, gpu_qkv))}
    for method in ("local", "radial", "random", "oracle"):
        keep_cpu, keep_gpu = (select_blocks(method, budget, layout, *pooled[d], mass, torch.Generator().manual_seed(0))
                              for d, mass in (("cpu", mass_cpu), (device, mass_gpu)))
        assert keep_gpu.device.type == device and int(keep_gpu.sum()) == int(keep_cpu.sum()), method
        if method != "oracle":  # the oracle may break near-ties of the block masses differently
            assert (keep_gpu.cpu() == keep_cpu).all(), method
    sparse_cpu = sparse_output(*qkv, keep_cpu, layout)
    sparse_gpu = sparse_output(*gpu_qkv, keep_cpu.to(device), layout)
    assert relative_l2(sparse_gpu.cpu(), sparse_cpu.float()) < 1e-2
    assert mass_recall(mass_gpu, keep_cpu.to(device), layout) == pytest.approx(mass_recall(mass_cpu, keep_cpu, layout),
                                                                                abs=1e-3)
