"""Region-major layout: permutation, round trips, pooling over valid tokens only."""
import pytest
import torch

import draftattn_cuda as da

LAYOUTS = [  # frames, height, width, region, text_len, text_first
    (2, 16, 32, (8, 16), 0, False),  # divisible: no edge blocks
    (3, 30, 52, (8, 16), 77, False),  # right and bottom edges with a corner; edge blocks straddle frames
    (1, 45, 80, (16, 8), 300, True),  # bottom edge only, text first
    (3, 24, 36, (8, 16), 5, True),  # right edge only, 96 edge tokens a frame
    (3, 20, 48, (8, 16), 130, False),  # bottom edge only, 192 edge tokens a frame
    (2, 20, 30, (16, 8), 40, False),  # both edges with region (16, 8)
    (2, 5, 7, (8, 16), 128, False),  # smaller than one region: every token is an edge token
    (4, 6, 10, (16, 8), 0, False),  # fewer region rows than one, one full region column
    (2, 17, 9, (8, 16), 3, True),  # fewer region columns than one, two full region rows
]


def make_layout(spec):
    frames, height, width, region, text_len, text_first = spec
    return da.VideoLayout(frames, height, width, region=region, text_len=text_len, text_first=text_first)


def video_blocks_by_loops(layout):
    """Model-order tokens of each video block, by direct enumeration of docs/CONTRACT.md: every full
    region is a block; the partial regions' tokens form one stream cut into blocks of 128."""
    frames, height, width = layout.frames, layout.height, layout.width
    video0 = layout.text_len if layout.text_first else 0
    full_regions, edge_stream = [], []
    for f in range(frames):
        for y0 in range(0, height, layout.region_h):
            for x0 in range(0, width, layout.region_w):
                tokens = [video0 + (f * height + y) * width + x
                          for y in range(y0, min(y0 + layout.region_h, height))
                          for x in range(x0, min(x0 + layout.region_w, width))]
                if len(tokens) == 128:
                    full_regions.append(tokens)
                else:
                    edge_stream += tokens
    return full_regions + [edge_stream[i:i + 128] for i in range(0, len(edge_stream), 128)]


def region_rows_by_loops(layout):
    """Model-order token of each padded region-major row, -1 for padding, by direct enumeration."""
    video_tokens = layout.frames * layout.height * layout.width
    text = list(range(layout.text_len)) if layout.text_first else [video_tokens + t for t in range(layout.text_len)]
    text_blocks = [text[i:i + 128] for i in range(0, layout.text_len, 128)]
    video_blocks = video_blocks_by_loops(layout)
    blocks = text_blocks + video_blocks if layout.text_first else video_blocks + text_blocks
    rows = []
    for block in blocks:
        rows += block + [-1] * (128 - len(block))
    return torch.tensor(rows)


@pytest.mark.parametrize("spec", LAYOUTS, ids=str)
def test_region_index_follows_the_contract(spec):
    layout = make_layout(spec)
    expected = region_rows_by_loops(layout)
    assert torch.equal(layout.region_index(), expected)
    real = expected >= 0
    assert torch.equal(layout.model_index()[expected[real]], torch.nonzero(real).flatten())


@pytest.mark.parametrize("spec", LAYOUTS, ids=str)
def test_counts_match_the_enumeration(spec):
    layout = make_layout(spec)
    blocks = video_blocks_by_loops(layout)
    assert len(blocks) == layout.num_regions == layout.full_regions + layout.edge_blocks
    assert all(len(b) == 128 for b in blocks[:layout.full_regions])
    assert sum(len(b) for b in blocks[layout.full_regions:]) == layout.edge_tokens
    # Only the last edge block is padded, so the video takes the fewest blocks that hold it.
    assert layout.num_regions == -(-layout.video_tokens // 128)
    assert layout.num_blocks == layout.num_regions + layout.text_blocks
    assert layout.padded_tokens == layout.num_blocks * 128 and layout.tokens == layout.video_tokens + layout.text_len


@pytest.mark.parametrize("spec", LAYOUTS, ids=str)
def test_to_regions_places_every_token_as_documented(spec, rng):
    layout = make_layout(spec)
    expected = region_rows_by_loops(layout)
    x = torch.randn(2, layout.tokens, 3, 8, generator=rng).to(torch.bfloat16)
    regions = layout.to_regions(x)
    assert regions.shape == (2, layout.num_blocks * 128, 3, 8)
    assert torch.equal(regions[:, expected >= 0], x[:, expected[expected >= 0]])
    assert torch.all(regions[:, expected < 0] == 0)
    assert torch.equal(layout.from_regions(regions), x)


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
    for block, tokens in enumerate(video_blocks_by_loops(layout)):
        want = x[0, tokens].float().mean(0)
        torch.testing.assert_close(pooled[0, :, block], want, atol=1e-6, rtol=1e-5)


def test_to_regions_and_pool_equals_separate_ops(rng):
    layout = make_layout(LAYOUTS[1])
    q, k, v = (torch.randn(1, layout.tokens, 2, 64, generator=rng).to(torch.bfloat16) for _ in range(3))
    q_r, k_r, v_r, q_p, k_p = torch.ops.draftattn.to_regions_and_pool(q, k, v, *layout.op_args)
    for got, x in ((q_r, q), (k_r, k), (v_r, v)):
        assert torch.equal(got, layout.to_regions(x))
    assert torch.equal(q_p, da.mean_pool(q, layout))
    assert torch.equal(k_p, da.mean_pool(k, layout))


def test_layout_counts_for_model_shapes():
    wan_720p = da.VideoLayout(21, 45, 80)  # 5 x 5 full regions a frame, 45*80 - 25*128 = 400 edge tokens
    assert (wan_720p.full_regions, wan_720p.edge_tokens, wan_720p.edge_blocks) == (525, 8400, 66)
    assert wan_720p.num_blocks == 591 and wan_720p.block_lens().tolist()[-1] == 8400 - 65 * 128
    hunyuan_720p = da.VideoLayout(33, 45, 80, text_len=256)  # 825 full regions + ceil(33*400/128) = 104
    assert (hunyuan_720p.full_regions, hunyuan_720p.edge_blocks, hunyuan_720p.num_regions) == (825, 104, 929)
    assert hunyuan_720p.num_blocks == 929 + 2
    # CogVideoX 13 x 30 x 45: 30 // 8 = 3 region rows, 45 // 16 = 2 region columns -> 13 * 6 = 78 full
    # regions; 30*45 - 6*128 = 582 edge tokens a frame, 13 * 582 = 7566 -> ceil(7566 / 128) = 60 edge
    # blocks, the last holding 7566 - 59*128 = 14; 78 + 60 = 138 video blocks after ceil(226/128) = 2 text.
    cog = da.VideoLayout(13, 30, 45, text_len=226, text_first=True)
    assert (cog.full_regions, cog.edge_tokens, cog.edge_blocks, cog.num_regions) == (78, 7566, 60, 138)
    assert (cog.text_blocks, cog.num_blocks, cog.tokens) == (2, 140, 17550 + 226)
    assert cog.block_lens().tolist() == [128, 98] + [128] * 137 + [14]


def test_large_layout_is_a_permutation():
    """HunyuanVideo 720p size: every video token lands on exactly one row, in vectorised time."""
    layout = da.VideoLayout(33, 45, 80, text_len=256)
    rows = layout.region_index()
    real = rows[rows >= 0]
    assert real.numel() == layout.tokens and torch.equal(real.sort().values, torch.arange(layout.tokens))
