"""The fidelity harness: its inputs, masks and metrics, and the CLI on a tiny video."""
import json

import pytest
import torch

import draftattn_cuda as da
from draftattn_cuda.fidelity import cli
from draftattn_cuda.fidelity.blocks import block_budget, forced_blocks
from draftattn_cuda.fidelity.evaluate import METHODS, select_blocks
from draftattn_cuda.fidelity.inputs import object_tracks, object_weights, video_qkv
from draftattn_cuda.fidelity.metrics import dense_reference, mass_recall, mean_cosine, relative_l2, sparse_output
from draftattn_cuda.fidelity.rotary import apply_rotary, rotary_angles
from draftattn_cuda.fidelity.static_masks import region_coordinates

# 3 frames of 16 x 32 (4 regions each) plus 40 text tokens after the video: 13 blocks.
LAYOUT = da.VideoLayout(3, 16, 32, text_len=40)


def seed_of(rng):
    return int(torch.randint(0, 2**31, (1,), generator=rng))


def case(seed, sharpness=2.0):
    q, k, v = video_qkv(LAYOUT, heads=2, head_dim=64, scene="video", sharpness=sharpness, seed=seed)
    dense_out, true_mass = dense_reference(q, k, v, LAYOUT)
    pooled = [torch.ops.draftattn.mean_pool(t, *LAYOUT.op_args) for t in (q, k)]
    return (q, k, v), dense_out, true_mass, pooled


def masks(seed, density, pooled, true_mass):
    generator = torch.Generator().manual_seed(seed)
    budget = block_budget(LAYOUT, density)
    return budget, {method: select_blocks(method, budget, LAYOUT, *pooled, true_mass, generator) for method in METHODS}


def test_density_one_is_exact(rng):
    seed = seed_of(rng)
    qkv, dense_out, true_mass, pooled = case(seed)
    _, keeps = masks(seed, 1.0, pooled, true_mass)
    # top-p stops short of blocks whose draft mass rounds to nothing (p cannot exceed 1)
    assert all(keep.all() for method, keep in keeps.items() if method != "topp")
    out = sparse_output(*qkv, keeps["oracle"], LAYOUT)
    assert mass_recall(true_mass, keeps["oracle"], LAYOUT) == pytest.approx(1.0, abs=1e-5)
    assert relative_l2(out, dense_out) < 2e-3 and mean_cosine(out, dense_out) > 0.9999


def test_budgets_met_with_diagonal_and_text_and_oracle_recalls_most(rng, density=0.3):
    seed = seed_of(rng)
    _, _, true_mass, pooled = case(seed)
    budget, keeps = masks(seed, density, pooled, true_mass)
    forced = forced_blocks(LAYOUT)
    oracle_recall = mass_recall(true_mass, keeps["oracle"], LAYOUT)
    for method, keep in keeps.items():
        assert (keep | forced == keep).all(), f"{method} drops a diagonal or text block"
        counts = keep.sum((-1, -2))
        if method in ("topk", "topp"):  # per-row rules: rows gain blocks together, up to one each
            assert (counts - budget).abs().max() <= LAYOUT.num_blocks, method
        else:
            assert (counts == budget).all(), method
        if (counts == budget).all():
            assert oracle_recall >= mass_recall(true_mass, keep, LAYOUT) - 1e-6, method


def test_static_mask_coordinates_are_block_centroids():
    """Full regions sit at their centres; edge blocks (packed partial regions) at the mean of their tokens."""
    layout = da.VideoLayout(2, 20, 40, text_len=30, text_first=True)  # 2 x 2 full regions a frame, 5 edge blocks
    coords = region_coordinates(layout)
    assert coords.shape == (layout.num_regions, 3) == (8 + 5, 3)
    for block in range(layout.full_regions):
        f, row, col = block // 4, block // 2 % 2, block % 2
        assert coords[block].tolist() == [f, row + 3.5 / 8, col + 7.5 / 16]
    rows = layout.region_index().view(layout.num_blocks, 128)[layout.text_blocks + layout.full_regions:]
    for block, tokens in enumerate(rows.tolist(), start=layout.full_regions):
        points = [((t - 30) // 800, (t - 30) // 40 % 20 / 8, (t - 30) % 40 / 16) for t in tokens if t >= 0]
        want = torch.tensor([sum(p[i] for p in points) / len(points) for i in range(3)])
        torch.testing.assert_close(coords[block], want)


def test_rotary_keeps_norms(rng):
    x = torch.randn(1, LAYOUT.video_tokens, 2, 64, generator=rng, dtype=torch.float64)
    f, y, c = (torch.randint(0, 50, (LAYOUT.video_tokens,), generator=rng) for _ in range(3))
    rotated = apply_rotary(x, rotary_angles(f, y, c, 64))
    torch.testing.assert_close(torch.linalg.vector_norm(rotated, dim=-1), torch.linalg.vector_norm(x, dim=-1))
    assert not torch.allclose(rotated, x)


def test_objects_move_across_frames(rng):
    centres = object_tracks(LAYOUT, 3, rng)
    weights = object_weights(LAYOUT, centres).view(3, LAYOUT.frames, -1)
    peak_token = weights.argmax(-1)
    assert (peak_token[:, 1:] != peak_token[:, :-1]).all()


def test_dense_reference_against_the_full_attention_map(rng):
    """Chunked output and block masses equal one full float64 softmax map summed over token blocks."""
    q, k, v = video_qkv(LAYOUT, heads=2, head_dim=64, scene="video", seed=seed_of(rng))
    out, mass = dense_reference(q, k, v, LAYOUT)
    qf, kf, vf = (t.double().transpose(1, 2) for t in (q, k, v))
    probs = torch.softmax(qf @ kf.transpose(-1, -2) / 8.0, -1)
    torch.testing.assert_close(out.double(), (probs @ vf).transpose(1, 2), atol=5e-5, rtol=1e-4)
    members = torch.nn.functional.one_hot(LAYOUT.model_index() // 128, LAYOUT.num_blocks).double()
    torch.testing.assert_close(mass.double(), members.T @ probs @ members, atol=1e-4, rtol=1e-4)


def test_cli_writes_json_tables_and_reproducing_command(tmp_path, capsys):
    path = tmp_path / "fidelity.json"
    argv = ["--shape", "2,8,32,2,64,20", "--shape", "1,16,24,1,128", "--seeds", "0", "--density", "0.5",
            "--sharpness", "1", "--scenes", "video", "--json", str(path), "--markdown", str(tmp_path / "f.md")]
    cli.main(argv)
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith("reproduce: python -m draftattn_cuda.fidelity " + " ".join(argv))
    assert "shape `2,8,32,2,64,20`, scene `video`" in printed and "shape `1,16,24,1,128`" in printed
    assert "best without the oracle" in printed
    result = json.loads(path.read_text())
    assert {(row["shape"], row["method"]) for row in result["rows"]} == {
        (shape, method) for shape in ("2,8,32,2,64,20", "1,16,24,1,128") for method in METHODS}
    for row in result["summary"]:
        assert 0 < row["density"] <= 1 and 0 < row["recall"] <= 1 + 1e-6 and row["rel_l2"] >= 0
    assert (tmp_path / "f.md").read_text().count("| method |") == 2


def test_cli_heads_override_plots_and_replots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    saved = tmp_path / "run.json"
    cli.main(["--shape", "1,8,32,4,64", "--heads", "1", "--seeds", "1", "--density", "0.5,0.25", "--sharpness", "2",
              "--scenes", "smooth", "--methods", "local,global", "--plot", str(tmp_path), "--json", str(saved)])
    png = tmp_path / "fidelity_1_8_32_4_64_smooth_sharpness2.png"
    printed = capsys.readouterr().out
    assert f"wrote {png}" in printed and png.read_bytes()[:4] == b"\x89PNG"
    assert {row["heads"] for row in json.loads(saved.read_text())["rows"]} == {1}
    png.unlink()
    cli.main(["--plot-from", str(saved), "--plot", str(tmp_path)])
    replotted = capsys.readouterr().out
    assert f"wrote {png}" in replotted and png.exists()
    assert "| local | " in replotted and replotted.index("| local |") < replotted.index("| global |")
    assert "| method | density 0.25 | density 0.5 |" in replotted


@pytest.mark.parametrize("argv, message", [(["--shape", "1,2,300,64"], "not a flat sequence"),
                                           (["--shape", "1,8,32,2,96"], "head_dim must be 64 or 128"),
                                           (["--methods", "global,best"], "unknown ['best']"),
                                           (["--density", "0"], "must be in (0, 1]"),
                                           (["--device", "tpu"], "must be cpu or cuda")])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)
    assert message in capsys.readouterr().err
