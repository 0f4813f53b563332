"""The fidelity harness: its inputs, masks and metrics, and the CLI on a tiny video."""
import json

import pytest
import torch

import draftattn_cuda as da
from draftattn_cuda.fidelity import cli
from draftattn_cuda.fidelity.blocks import block_budget, forced_blocks
from draftattn_cuda.fidelity.evaluate import METHODS, select_blocks
from draftattn_cuda.fidelity.inputs import object_tracks, object_weights, video_qkv
from draftattn_cuda.fidelity.metrics import block_mass, dense_reference, mass_recall, mean_cosine, relative_l2, \
    sparse_output
from draftattn_cuda.fidelity.rotary import apply_rotary, rotary_angles

# 3 frames of 16 x 32 (4 regions each) plus 40 text tokens after the video: 13 blocks.
LAYOUT = da.VideoLayout(3, 16, 32, text_len=40)


def seed_of(rng):
    return int(torch.randint(0, 2**31, (1,), generator=rng))


def case(seed, sharpness=2.0):
    q, k, v = video_qkv(LAYOUT, heads=2, head_dim=64, scene="video", sharpness=sharpness, seed=seed)
    dense_out, row_block_mass = dense_reference(q, k, v, LAYOUT)
    pooled = [torch.ops.draftattn.mean_pool(t, *LAYOUT.op_args) for t in (q, k)]
    return (q, k, v), dense_out, row_block_mass, pooled


def masks(seed, density, pooled, row_block_mass):
    generator = torch.Generator().manual_seed(seed)
    budget = block_budget(LAYOUT, density)
    true_mass = block_mass(row_block_mass, LAYOUT)
    return budget, {method: select_blocks(method, budget, LAYOUT, *pooled, true_mass, generator) for method in METHODS}


def test_density_one_is_exact(rng):
    seed = seed_of(rng)
    qkv, dense_out, row_block_mass, pooled = case(seed)
    _, keeps = masks(seed, 1.0, pooled, row_block_mass)
    # top-p stops short of blocks whose draft mass rounds to nothing (p cannot exceed 1)
    assert all(keep.all() for method, keep in keeps.items() if method != "topp")
    out = sparse_output(*qkv, keeps["oracle"], LAYOUT)
    assert mass_recall(row_block_mass, keeps["oracle"], LAYOUT) == pytest.approx(1.0, abs=1e-5)
    assert relative_l2(out, dense_out) < 2e-3 and mean_cosine(out, dense_out) > 0.9999


def test_budgets_met_with_diagonal_and_text_and_oracle_recalls_most(rng, density=0.3):
    seed = seed_of(rng)
    _, _, row_block_mass, pooled = case(seed)
    budget, keeps = masks(seed, density, pooled, row_block_mass)
    forced = forced_blocks(LAYOUT)
    oracle_recall = mass_recall(row_block_mass, keeps["oracle"], LAYOUT)
    for method, keep in keeps.items():
        assert (keep | forced == keep).all(), f"{method} drops a diagonal or text block"
        counts = keep.sum((-1, -2))
        if method in ("topk", "topp"):  # per-row rules: rows gain blocks together, up to one each
            assert (counts - budget).abs().max() <= LAYOUT.num_blocks, method
        else:
            assert (counts == budget).all(), method
        if (counts == budget).all():
            assert oracle_recall >= mass_recall(row_block_mass, keep, LAYOUT) - 1e-6, method


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


def test_cli_writes_json_and_reproducing_command(tmp_path, capsys):
    path = tmp_path / "fidelity.json"
    argv = ["--frames", "2", "--height", "8", "--width", "32", "--text-len", "20", "--seeds", "0",
            "--density", "0.5", "--sharpness", "1", "--scenes", "video", "--json", str(path)]
    cli.main(argv)
    printed = capsys.readouterr().out
    assert "| method |" in printed and "reproduce: python -m draftattn_cuda.fidelity --frames 2" in printed
    result = json.loads(path.read_text())
    assert {row["method"] for row in result["rows"]} == set(METHODS)
    for row in result["summary"]:
        assert 0 < row["density"] <= 1 and 0 < row["recall"] <= 1 + 1e-6 and row["rel_l2"] >= 0
