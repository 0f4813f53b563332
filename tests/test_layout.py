"""Region-major layout: permutation, round trips, pooling over valid tokens only."""
import pytest
import torch

import draftattn_cuda as da

LAYOUTS = [  # frames, height, width, region, text_len, text_first
    (2, 16, 32, (8, 16), 0, False),
    (3, 30, 52, (8, 16), 77, False),
    (1, 45, 80, (16, 8), 300, True),
    (2, 5, 7, (8, 16), 128, False),
]


def make_layout(spec):
    frames, height, width, region, text_len, text_first = spec
    return da.VideoLayout(frames, height, width, region=region, text_len=text_len, text_first=text_first)


def region_rows_by_loops(layout):
    """Model-order token of each padded region-major row, -1 for padding, by direct enumeration."""
    rows = []
    text = list(range(layout.text_len)) if layout.text_first else [layout.video_tokens + t for t in range(layout.text_len)]
    text_blocks = [text[i:i + 128] for i in range(0, layout.text_len, 128)]
    video0 = layout.text_len if layout.text_first else 0
    video_blocks = []
    for f in range(layout.frames):
        for y0 in range(0, layout.height, layout.region_h):
            for x0 in range(0, layout.width, layout.region_w):
                video_blocks.append([video0 + (f * layout.height + y) * layout.width + x
                                     for y in range(y0, min(y0 + layout.region_h, layout.height))
                                     for x in range(x0, min(x0 + layout.region_w, layout.width))])
    blocks = text_blocks + video_blocks if layout.text_first else video_blocks + text_blocks
    for block in blocks:
        rows += block + [-1] * (128 - len(block))
    return torch.tensor(rows)


@pytest.mark.parametrize("spec", LAYOUTS, ids=str)
def test_to_regions_places_every_token_as_documented(spec, rng):
    layout = make_layout(spec)
    expected = region_rows_by_loops(layout)
    assert torch.equal(layout.region_index(), expected)
    x = torch.randn(2, layout.tokens, 3, 8, generator=rng).to(torch.bfloat16)
    regions = layout.to_regions(x)
    assert regions.shape == (2, layout.num_blocks * 128, 3, 8)
    assert torch.equal(regions[:, expected >= 0], x[:, expected[expected >= 0]])
    assert torch.all(regions[:, expected < 0] == 0)
    assert torch.equal(layout.from_regions(regions), x)
    assert torch.equal(layout.model_index()[expected[expected >= 0]], torch.nonzero(expected >= 0).flatten())


@pytest.mark.parametrize("spec", LAYOUTS, ids=str)
def test_block_lens_count_valid_tokens(spec):
    layout = make_layout(spec)
    expected = (region_rows_by_loops(layout) >= 0).view(-1, 128).sum(1)
    assert layout.block_lens().dtype == torch.int32
    assert torch.equal(layout.block_lens().long(), expected)


@pytest.mark.parametrize("spec", LAYOUTS, ids=str)
def test_mean_pool_averages_only_valid_video_tokens(spec, rng):
    layout = make_layout(spec)
    x = torch.randn(1, layout.tokens, 2, 16, generator=rng).to(torch.float16)
    pooled = da.mean_pool(x, layout)
    assert pooled.shape == (1, 2, layout.num_regions, 16) and pooled.dtype == torch.float32
    video0 = layout.text_len if layout.text_first else 0
    region = 0
    for f in range(layout.frames):
        for y0 in range(0, layout.height, layout.region_h):
            for x0 in range(0, layout.width, layout.region_w):
                tokens = [video0 + (f * layout.height + y) * layout.width + xx
                          for y in range(y0, min(y0 + layout.region_h, layout.height))
                          for xx in range(x0, min(x0 + layout.region_w, layout.width))]
                want = x[0, tokens].float().mean(0)
                torch.testing.assert_close(pooled[0, :, region], want, atol=1e-6, rtol=1e-5)
                region += 1


def test_to_regions_and_pool_equals_separate_ops(rng):
    layout = make_layout(LAYOUTS[1])
    q, k, v = (torch.randn(1, layout.tokens, 2, 64, generator=rng).to(torch.bfloat16) for _ in range(3))
    q_r, k_r, v_r, q_p, k_p = torch.ops.draftattn.to_regions_and_pool(q, k, v, *layout.op_args)
    for got, x in ((q_r, q), (k_r, k), (v_r, v)):
        assert torch.equal(got, layout.to_regions(x))
    assert torch.equal(q_p, da.mean_pool(q, layout))
    assert torch.equal(k_p, da.mean_pool(k, layout))


def test_layout_counts_for_model_shapes():
    wan_720p = da.VideoLayout(21, 45, 80)
    assert (wan_720p.regions_y, wan_720p.regions_x, wan_720p.num_blocks) == (6, 5, 630)
    cog = da.VideoLayout(13, 30, 45, text_len=226, text_first=True)
    assert (cog.num_regions, cog.text_blocks, cog.tokens) == (13 * 4 * 3, 2, 17550 + 226)
    assert cog.block_lens().tolist()[:2] == [128, 98]
