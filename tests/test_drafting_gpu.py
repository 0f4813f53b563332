"""The CUDA drafting kernels (layout, pooling, draft map + block selection) against the CPU
reference ops: every model shape of docs/ALGORITHM.md (few frames and heads to stay fast),
text before / after the video, partial regions, strided and misaligned inputs, tied values,
bad inputs, and a CUDA-graph capture of the whole drafting path."""
import pytest
import torch

import draftattn_cuda
from draftattn_cuda import VideoLayout
from draftattn_cuda.build_info import cuda_kernels_built

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not cuda_kernels_built("draft_select"),
    reason="needs a CUDA device and a CUDA build of draftattn_cuda (the drafting kernels)",
)
ops = torch.ops.draftattn
DEV = "cuda"

# (name, layout, heads, head_dim): the ALGORITHM.md grids with 2 frames.
MODEL_SHAPES = [
    ("wan1.3b_480p", VideoLayout(2, 30, 52), 2, 128),
    ("wan14b_720p", VideoLayout(2, 45, 80), 2, 128),
    ("wan14b_768p", VideoLayout(2, 48, 80), 2, 128),
    ("hunyuan_720p", VideoLayout(2, 45, 80, text_len=256), 2, 128),
    ("hunyuan_768p", VideoLayout(2, 48, 80, text_len=200), 2, 128),
    ("cogvideox", VideoLayout(2, 30, 45, text_len=226, text_first=True), 2, 64),
    ("odd_regions", VideoLayout(3, 20, 40, region=(16, 8), text_len=5), 1, 64),
]
SHAPE_IDS = [s[0] for s in MODEL_SHAPES]


def model_order(layout, heads, head_dim, dtype, gen, batch=1):
    return torch.randn(batch, layout.tokens, heads, head_dim, generator=gen).to(dtype).to(DEV)


@pytest.mark.parametrize("name,layout,heads,head_dim", MODEL_SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_layout_and_pooling_match_reference(name, layout, heads, head_dim, dtype, rng):
    q, k, v = (model_order(layout, heads, head_dim, dtype, rng, batch=2) for _ in range(3))
    got = ops.to_regions_and_pool(q, k, v, *layout.op_args)
    want = ops.to_regions_and_pool(q.cpu(), k.cpu(), v.cpu(), *layout.op_args)
    for g, w in zip(got[:3], want[:3]):
        assert torch.equal(g.cpu(), w)
    for g, w in zip(got[3:], want[3:]):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-5, atol=1e-6)
    # The single-purpose ops run the same kernel: bit-equal to the fused pass.
    assert torch.equal(ops.to_regions(q, *layout.op_args), got[0])
    assert torch.equal(ops.mean_pool(k, *layout.op_args), got[4])
    assert torch.equal(ops.from_regions(got[2], *layout.op_args), v)


@pytest.mark.parametrize("name,layout,heads,head_dim", MODEL_SHAPES, ids=SHAPE_IDS)
def test_from_regions_matches_reference(name, layout, heads, head_dim, rng):
    x = torch.randn(1, layout.padded_tokens, heads, head_dim, generator=rng).bfloat16()
    assert torch.equal(ops.from_regions(x.to(DEV), *layout.op_args).cpu(), ops.from_regions(x, *layout.op_args))


def test_strided_and_misaligned_inputs(rng):
    layout = VideoLayout(2, 30, 52, text_len=130)
    packed = torch.randn(2, layout.tokens, 3, 4, 128, generator=rng).bfloat16().to(DEV)
    q, k, v = packed.unbind(2)  # views of a fused qkv projection: 16-byte aligned, not contiguous
    padded = torch.randn(2, layout.tokens, 4, 129, generator=rng).half().to(DEV)
    odd = padded[..., 1:]  # 2-byte aligned rows: the scalar path
    for x in (q, odd):
        assert torch.equal(ops.to_regions(x, *layout.op_args).cpu(), ops.to_regions(x.cpu(), *layout.op_args))
        torch.testing.assert_close(ops.mean_pool(x, *layout.op_args).cpu(), ops.mean_pool(x.cpu(), *layout.op_args),
                                   rtol=1e-5, atol=1e-6)
    got = ops.to_regions_and_pool(q, k, v, *layout.op_args)
    want = ops.to_regions_and_pool(q.cpu(), k.cpu(), v.cpu(), *layout.op_args)
    assert all(torch.equal(g.cpu(), w) for g, w in zip(got[:3], want[:3]))
    regions = ops.to_regions(odd, *layout.op_args)
    back = ops.from_regions(torch.cat([regions[..., :1], regions], -1)[..., 1:], *layout.op_args)
    assert torch.equal(back, odd)


def test_float32_activations_use_the_reference(rng):
    layout = VideoLayout(2, 30, 52)
    x = torch.randn(1, layout.tokens, 2, 64, generator=rng)
    assert torch.equal(ops.to_regions(x.to(DEV), *layout.op_args).cpu(), ops.to_regions(x, *layout.op_args))


def selection_masks(kv_indices, kv_counts):
    """(batch, heads, nb, nb) bool from block lists; also checks they are sorted with -1 tails."""
    nb = kv_indices.shape[-1]
    slot = torch.arange(nb)
    listed = slot < kv_counts.unsqueeze(-1)
    assert torch.all(kv_indices[~listed] == -1)
    idx = kv_indices.long()
    assert torch.all((idx[..., 1:] > idx[..., :-1]) | ~listed[..., 1:])
    mask = torch.zeros(*kv_indices.shape[:-1], nb + 1, dtype=torch.bool)
    mask.scatter_(-1, torch.where(listed, idx, nb), True)
    return mask[..., :nb]


def assert_same_selection(got, want, probs=None, rule="global", video=slice(None), rel_tol=1e-4):
    """Equal block sets. With `probs` (the draft map), entries may differ only where their
    probability sits at the rule's cut (fp32 rounding of matmul / exp differs from the CPU)."""
    got_mask, want_mask = selection_masks(*(t.cpu() for t in got)), selection_masks(*want)
    differ = got_mask != want_mask
    if probs is None or not differ.any():
        assert not differ.any(), f"{int(differ.sum())} block choices differ"
        return
    g, w = got_mask[..., video, video], want_mask[..., video, video]
    assert torch.equal(differ[..., video, video].sum(), differ.sum()), "text or diagonal blocks differ"
    off_diag = ~torch.eye(probs.shape[-1], dtype=torch.bool)
    dims = (-2, -1) if rule == "global" else (-1,)
    lo = torch.where(w & off_diag, probs, float("inf")).amin(dims, keepdim=True)
    hi = torch.where(~w, probs, float("-inf")).amax(dims, keepdim=True)
    band_lo, band_hi = torch.minimum(lo, hi) * (1 - rel_tol), torch.maximum(lo, hi) * (1 + rel_tol)
    v = probs[g != w]
    inside = (v >= band_lo.expand_as(probs)[g != w]) & (v <= band_hi.expand_as(probs)[g != w])
    assert inside.all(), f"{int((~inside).sum())} differing blocks are not at the cut"
    assert int(differ.sum()) <= max(4, differ.numel() // 10000)


def draft_probs(q_pooled, k_pooled):
    return torch.softmax((q_pooled.double() @ k_pooled.double().transpose(-1, -2)) / q_pooled.shape[-1] ** 0.5, -1)


RULES = [("global", 0.9), ("global", 0.0), ("global", 1.0), ("global", 0.55), ("topk", 0.9), ("topk", 0.3),
         ("topp", 0.9), ("topp", 0.5)]


@pytest.mark.parametrize("name,layout,heads,head_dim", MODEL_SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("rule,level", RULES)
def test_selection_random_inputs(name, layout, heads, head_dim, rule, level, rng):
    S = layout.num_regions
    q_pooled = torch.randn(1, heads, S, head_dim, generator=rng) * 0.6
    k_pooled = torch.randn(1, heads, S, head_dim, generator=rng) * 0.6
    args = (rule, level, level if rule == "topp" else 0.9, layout.text_blocks, layout.text_first)
    got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), *args)
    want = ops.draft_select(q_pooled, k_pooled, *args)
    start = layout.text_blocks if layout.text_first else 0
    assert_same_selection(got, want, draft_probs(q_pooled, k_pooled).float(), rule, slice(start, start + S))


def patterned(S, head_dim, patterns, gen):
    """Rows drawn from a few integer patterns (times 1/8): the logits are exact in fp32 on
    both sides, rows of one pattern are bit-equal, so many probabilities tie exactly."""
    base = torch.randint(-3, 4, (patterns, head_dim), generator=gen).float() / 8
    return base[torch.randint(0, patterns, (S,), generator=gen)]


@pytest.mark.parametrize("S", [27, 60, 200, 591])
@pytest.mark.parametrize("rule,level", RULES)
def test_selection_tied_inputs(S, rule, level):
    gen = torch.Generator().manual_seed(S)
    q_pooled = torch.stack([patterned(S, 64, 3, gen), torch.zeros(S, 64)]).unsqueeze(0)  # head 1: all ties
    k_pooled = torch.stack([patterned(S, 64, 4, gen), patterned(S, 64, 2, gen)]).unsqueeze(0)
    for text_blocks, text_first in ((0, False), (2, True), (1, False)):
        args = (rule, level, level if rule == "topp" else 0.9, text_blocks, text_first)
        got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), *args)
        assert_same_selection(got, ops.draft_select(q_pooled, k_pooled, *args))


def test_selection_large_draft_map(rng):
    """S = 4096 regions: many logit tiles, the scores map far larger than shared memory."""
    q_pooled = torch.randn(1, 1, 4096, 64, generator=rng) * 0.6
    k_pooled = torch.randn(1, 1, 4096, 64, generator=rng) * 0.6
    probs = draft_probs(q_pooled, k_pooled).float()
    for rule in ("global", "topk", "topp"):
        got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), rule, 0.9, 0.9, 0, False)
        want = ops.draft_select(q_pooled, k_pooled, rule, 0.9, 0.9, 0, False)
        assert_same_selection(got, want, probs, rule)


# Region counts around the per-row kernel's key widths (8, 32, 64, 128 keys per lane) and
# the digit passes' 32K-entry slices; none a multiple of anything in particular.
ROW_SIZES = [1, 2, 31, 33, 255, 257, 1000, 1025, 2047, 2049, 4096]


@pytest.mark.parametrize("S", ROW_SIZES)
def test_per_row_rules_every_key_width(S, rng):
    q_pooled = torch.randn(1, 2, S, 64, generator=rng) * 0.6
    k_pooled = torch.randn(1, 2, S, 64, generator=rng) * 0.6
    probs = draft_probs(q_pooled, k_pooled).float()
    for rule, level in (("topk", 0.9), ("topk", 0.0), ("topk", 1.0), ("topp", 0.9), ("topp", 0.3), ("topp", 1.0)):
        args = (rule, level, level if rule == "topp" else 0.9, 1, False)
        got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), *args)
        want = ops.draft_select(q_pooled, k_pooled, *args)
        assert_same_selection(got, want, probs, rule, slice(0, S))


@pytest.mark.parametrize("S", [33, 1025, 2049, 4096])
def test_tied_rows_every_key_width(S):
    """Few distinct logits per row, exact on both sides: every rule must pick the same
    lowest columns among equal values, and the global cut splits large tie groups that span
    many rows (the tie counts of many CTAs are combined)."""
    gen = torch.Generator().manual_seed(S)
    q_pooled = patterned(S, 64, 2, gen).view(1, 1, S, 64)
    k_pooled = patterned(S, 64, 3, gen).view(1, 1, S, 64)
    for rule, level in (("global", 0.9), ("global", 0.37), ("topk", 0.9), ("topk", 0.5), ("topp", 0.9),
                        ("topp", 0.5)):
        args = (rule, level, level if rule == "topp" else 0.9, 0, False)
        got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), *args)
        assert_same_selection(got, ops.draft_select(q_pooled, k_pooled, *args))


def test_equal_query_rows_select_equally_wherever_they_sit(rng):
    """Copies of one random (not exactly representable) q row at different positions inside
    and across the 128-row logit tiles must get bit-equal draft rows: the per-row rules then
    keep the same columns for them (apart from each row's own diagonal block)."""
    S = 1200
    q_pooled = torch.randn(1, 2, S, 128, generator=rng) * 0.6
    k_pooled = torch.randn(1, 2, S, 128, generator=rng) * 0.6
    copies = [5, 13, 77, 130, 255, 640, 1199]
    q_pooled[:, :, copies] = q_pooled[:, :, copies[:1]]
    others = torch.ones(S, dtype=torch.bool)
    others[copies] = False
    for rule, level in (("topk", 0.9), ("topk", 0.5), ("topp", 0.9), ("topp", 0.5)):
        args = (rule, level, level, 0, False)
        got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), *args)
        mask = selection_masks(*(t.cpu() for t in got))
        rows = mask[:, :, copies][..., others]
        assert torch.equal(rows, rows[:, :, :1].expand_as(rows)), f"{rule} {level}: copies of one row differ"
        assert_same_selection(got, ops.draft_select(q_pooled, k_pooled, *args),
                              draft_probs(q_pooled, k_pooled).float(), rule)


@pytest.mark.parametrize("S", [64, 256, 1024, 4096])
def test_top_p_exactly_at_a_partial_sum(S):
    """Uniform rows (p = 1/S exactly on both sides): the mass before entry k is (k-1)/S, so
    top_p = 1/4, 1/2 lands exactly on a partial sum, which must not be kept."""
    pooled = torch.zeros(1, 1, S, 64)
    for top_p in (0.25, 0.5, 1.0):
        got = ops.draft_select(pooled.to(DEV), pooled.to(DEV), "topp", 0.0, top_p, 0, False)
        want = ops.draft_select(pooled, pooled, "topp", 0.0, top_p, 0, False)
        assert_same_selection(got, want)
        kept = int(top_p * S)
        diagonal_extra = (torch.arange(S) >= kept).long()
        assert torch.equal(got[1].cpu()[0, 0].long(), kept + diagonal_extra)


def test_global_rule_on_many_heads_and_batches(rng):
    """batch 2 x 5 heads: every head has its own select state and threshold."""
    layout = VideoLayout(3, 45, 80, text_len=130)
    S = layout.num_regions
    q_pooled = torch.randn(2, 5, S, 128, generator=rng) * 0.5
    k_pooled = torch.randn(2, 5, S, 128, generator=rng) * 0.5
    probs = draft_probs(q_pooled, k_pooled).float()
    for level in (0.9, 0.5):
        args = ("global", level, 0.9, layout.text_blocks, layout.text_first)
        got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), *args)
        assert_same_selection(got, ops.draft_select(q_pooled, k_pooled, *args), probs, "global", slice(0, S))


def poison_cached_memory(nbytes):
    """Leaves a block of 0xff bytes (NaN floats, all-ones counters) in the caching allocator,
    which the next allocation of a similar size reuses: kernels must not read stale scratch."""
    torch.full((nbytes,), 255, dtype=torch.uint8, device=DEV)
    torch.cuda.synchronize()


def test_selection_ignores_stale_workspace_and_is_deterministic():
    gen = torch.Generator().manual_seed(11)
    S = 2000
    q_pooled = torch.stack([patterned(S, 64, 2, gen), torch.randn(S, 64, generator=gen) * 0.5]).unsqueeze(0)
    k_pooled = torch.stack([patterned(S, 64, 3, gen), torch.randn(S, 64, generator=gen) * 0.5]).unsqueeze(0)
    q_dev, k_dev = q_pooled.to(DEV), k_pooled.to(DEV)
    for rule in ("global", "topk", "topp"):
        args = (rule, 0.8, 0.8, 2, True)
        clean = ops.draft_select(q_dev, k_dev, *args)
        for _ in range(3):
            poison_cached_memory(2 * 4 * S * S + (1 << 20))
            again = ops.draft_select(q_dev, k_dev, *args)
            assert torch.equal(again[0], clean[0]) and torch.equal(again[1], clean[1])
        want = ops.draft_select(q_pooled, k_pooled, *args)
        got_mask, want_mask = selection_masks(*(t.cpu() for t in clean)), selection_masks(*want)
        assert torch.equal(got_mask[:, 0], want_mask[:, 0]), f"{rule}: tied head differs"


def test_selection_from_full_wan_shape_regions():
    """Wan-14B 720p has S = 591 video blocks per head: the global rule over 349,281 entries."""
    gen = torch.Generator().manual_seed(7)
    layout = VideoLayout(21, 45, 80)
    q_pooled = torch.randn(1, 2, layout.num_regions, 128, generator=gen) * 0.3
    k_pooled = torch.randn(1, 2, layout.num_regions, 128, generator=gen) * 0.3
    got = ops.draft_select(q_pooled.to(DEV), k_pooled.to(DEV), "global", 0.9, 0.9, 0, False)
    want = ops.draft_select(q_pooled, k_pooled, "global", 0.9, 0.9, 0, False)
    assert_same_selection(got, want, draft_probs(q_pooled, k_pooled).float(), "global")


def test_bad_inputs_raise_clear_errors():
    layout = VideoLayout(2, 30, 52)
    x = torch.zeros(1, layout.tokens, 2, 64, device=DEV, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="x has .* tokens"):
        ops.to_regions(x[:, 1:], *layout.op_args)
    with pytest.raises(RuntimeError, match="region_h \\* region_w must equal"):
        ops.mean_pool(x, 2, 30, 52, 8, 8, 0, False)
    with pytest.raises(RuntimeError, match="x must be float16, bfloat16 or float32"):
        ops.to_regions(x.int(), *layout.op_args)
    with pytest.raises(RuntimeError, match="k must have the same dtype as q"):
        ops.to_regions_and_pool(x, x.half(), x, *layout.op_args)
    pooled = torch.zeros(1, 2, layout.num_regions, 64, device=DEV)
    with pytest.raises(RuntimeError, match="rule must be 'global', 'topk' or 'topp'"):
        ops.draft_select(pooled, pooled, "top", 0.9, 0.9, 0, False)
    with pytest.raises(RuntimeError, match="sparsity must be in \\[0, 1\\]"):
        ops.draft_select(pooled, pooled, "global", 1.5, 0.9, 0, False)
    with pytest.raises(RuntimeError, match="q_pooled must be float32"):
        ops.draft_select(pooled.half(), pooled.half(), "global", 0.9, 0.9, 0, False)


def test_drafting_path_captures_in_a_cuda_graph(rng):
    """The drafting path has no host sync: it records into a CUDA graph and replays exactly."""
    layout = VideoLayout(2, 45, 80, text_len=256)
    q, k, v = (model_order(layout, 2, 128, torch.bfloat16, rng) for _ in range(3))

    def drafting():
        q_r, k_r, v_r, q_p, k_p = ops.to_regions_and_pool(q, k, v, *layout.op_args)
        lists = [ops.draft_select(q_p, k_p, rule, 0.8, 0.8, layout.text_blocks, layout.text_first)
                 for rule in ("global", "topk", "topp")]
        return q_r, k_r, v_r, ops.from_regions(v_r, *layout.op_args), lists

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        eager = drafting()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = drafting()
    q.copy_(torch.randn(q.shape, generator=rng).bfloat16())
    graph.replay()
    torch.cuda.synchronize()
    fresh = drafting()
    for g, w in zip(captured[:4], fresh[:4]):
        assert torch.equal(g, w)
    for g, w in zip(captured[4], fresh[4]):
        assert torch.equal(g[0], w[0]) and torch.equal(g[1], w[1])
    assert not torch.equal(captured[0], eager[0])  # the replay really recomputed from the new q
