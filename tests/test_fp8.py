"""FP8 (e4m3) attention: the quantisation pass, the fp8 key order, the reference op, and on
an sm_90 GPU the kernel against the fp32 reference. The accuracy bounds here are the ones
documented in README.md."""
import math

import pytest
import torch

import draftattn_cuda as da
from attention_math import BLOCK, dense_attention, random_block_lists, token_mask_from_lists

E4M3_MAX = 448.0


def key_order(tokens):
    """Independent statement of docs/CONTRACT.md's fp8 key order: slot p of each group of 32
    holds token 16*(p//16) + 2*((p%16)//4) + (p%4)%2 + 8*((p%4)//2)."""
    p = torch.arange(tokens)
    return 16 * (p // 16) + 2 * ((p % 16) // 4) + (p % 4) % 2 + 8 * ((p % 4) // 2)


def dequantize(q8, k8, v_t8, q_descale, k_descale, v_descale, tokens):
    per_token = lambda d: d.permute(0, 2, 1).repeat_interleave(BLOCK, 1)[:, :tokens, :, None]  # noqa: E731
    q = q8.float() * per_token(q_descale)
    k = k8.float() * per_token(k_descale)
    v = torch.empty_like(v_t8, dtype=torch.float32)
    v[..., key_order(v_t8.shape[-1])] = v_t8.float()
    v = v.permute(0, 3, 1, 2)[:, :tokens] * v_descale[:, None, :, None]
    return q, k, v


@pytest.mark.parametrize("tokens,head_dim", [(256, 64), (300, 128)])
def test_quantize_round_trip_and_key_order(rng, tokens, head_dim):
    q, k, v = (torch.randn(2, tokens, 3, head_dim, generator=rng) * 3 for _ in range(3))
    quantized = da.quantize_fp8(q, k, v)
    q8, k8, v_t8, q_descale, k_descale, v_descale = quantized
    blocks = math.ceil(tokens / BLOCK)
    assert q8.dtype == k8.dtype == v_t8.dtype == torch.float8_e4m3fn
    assert v_t8.shape == (2, 3, head_dim, blocks * BLOCK)
    assert q_descale.shape == k_descale.shape == (2, 3, blocks) and v_descale.shape == (2, 3)
    for original, restored, descale in zip((q, k, v), dequantize(*quantized, tokens),
                                           (q_descale, k_descale, v_descale)):
        # e4m3 keeps 3 mantissa bits: relative rounding <= 2^-4, plus the subnormal step.
        step = descale.max() * 2.0**-9
        assert ((restored - original).abs() <= original.abs() * 2.0**-4 + step).all()
    # Each full block's largest |q| lands on e4m3's largest value.
    full = tokens // BLOCK
    block_max = q8[:, :full * BLOCK].float().abs().view(2, full, BLOCK, 3, head_dim).amax((2, 4))
    assert (block_max == E4M3_MAX).all()


def test_quantized_values_take_the_input_sign(rng):
    """inf / inf in a group whose max is inf is a NaN whose sign the platform would pick: the
    quantisation gives it the input's sign, and saturates at 448 where a NaN in the group kept
    the descale at 1, as the CUDA passes do (test_quantize_fp8_gpu.py)."""
    q, k, v = (torch.randn(1, 256, 2, 64, generator=rng) for _ in range(3))
    k[0, 3, 1, 5], k[0, 9, 1, 6], k[0, 10, 1, 7] = float("inf"), -float("inf"), -0.5
    q[0, 200, 0, 1], q[0, 201, 0, 2], q[0, 202, 0, 3] = float("nan"), 1000.0, -500.0  # descale 1 there
    q8, k8 = (t.view(torch.uint8) for t in da.quantize_fp8(q, k, v)[:2])
    assert k8[0, 3, 1, 5] == 0x7F and k8[0, 9, 1, 6] == 0xFF and k8[0, 10, 1, 7] == 0x80  # NaN, -NaN, -0
    assert q8[0, 200, 0, 1] == 0x7F and q8[0, 201, 0, 2] == 0x7E and q8[0, 202, 0, 3] == 0xFE  # NaN, +-448


def test_reference_op_is_attention_on_dequantized_inputs(rng):
    tokens, heads, head_dim = 300, 2, 64
    q, k, v = (torch.randn(1, tokens, heads, head_dim, generator=rng) for _ in range(3))
    quantized = da.quantize_fp8(q, k, v)
    nb = math.ceil(tokens / BLOCK)
    kv_indices, kv_counts = random_block_lists(1, heads, nb, rng)
    out, lse = da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:])
    qd, kd, vd = dequantize(*quantized, tokens)
    mask = token_mask_from_lists(kv_indices, kv_counts, None, tokens)
    ref_out, ref_lse = dense_attention(qd, kd, vd, mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref_out, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(lse, ref_lse, atol=1e-5, rtol=1e-5)


def test_opcheck_fp8_ops(rng):
    q, k, v = (torch.randn(1, 200, 2, 64, generator=rng) for _ in range(3))
    torch.library.opcheck(torch.ops.draftattn.quantize_fp8.default, (q, k, v))
    quantized = da.quantize_fp8(q, k, v)
    kv_indices, kv_counts = random_block_lists(1, 2, 2, rng)
    args = (*quantized[:3], kv_indices, kv_counts, *quantized[3:])
    # opcheck's schema test compares fp8 tensors with arithmetic torch lacks for e4m3 on the
    # CPU; the no-mutation half of it is checked by hand below.
    torch.library.opcheck(torch.ops.draftattn.sparse_attn_fp8.default, args,
                          test_utils=("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"))
    before = [t.clone() for t in args]
    torch.ops.draftattn.sparse_attn_fp8.default(*args)
    assert all(torch.equal(a.view(torch.uint8) if a.dtype == torch.float8_e4m3fn else a,
                           b.view(torch.uint8) if b.dtype == torch.float8_e4m3fn else b) for a, b in zip(args, before))


def test_fp8_errors_name_the_argument(rng):
    q, k, v = (torch.randn(1, 200, 2, 64, generator=rng) for _ in range(3))
    q8, k8, v_t8, qd, kd, vd = da.quantize_fp8(q, k, v)
    kv_indices, kv_counts = random_block_lists(1, 2, 2, rng)
    with pytest.raises(RuntimeError, match="q must be float8_e4m3fn"):
        da.sparse_attn_fp8(q.bfloat16(), k8, v_t8, kv_indices, kv_counts, qd, kd, vd)
    with pytest.raises(RuntimeError, match="v_t must have shape"):
        da.sparse_attn_fp8(q8, k8, v_t8[..., :128], kv_indices, kv_counts, qd, kd, vd)
    with pytest.raises(RuntimeError, match="k_descale must be a contiguous tensor of shape"):
        da.sparse_attn_fp8(q8, k8, v_t8, kv_indices, kv_counts, qd, kd[..., :1], vd)
    with pytest.raises(RuntimeError, match="head_dim must be 64 or 128"):
        da.quantize_fp8(*(torch.randn(1, 8, 1, 32) for _ in range(3)))


def rel_l2(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0).item()


@pytest.mark.requires_cuda_build
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("inputs", ["random", "structured"])
def test_kernel_accuracy_against_fp32(rng, head_dim, inputs):
    """fp8 kernel vs exact fp32 attention under the same mask, next to the bf16 kernel."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the fp8 kernel needs sm_90")
    tokens, heads = 1000, 2
    if inputs == "random":
        q, k, v = (torch.randn(1, tokens, heads, head_dim, generator=rng) for _ in range(3))
    else:  # a few shared directions plus noise: peaked attention, as in video models
        basis = torch.randn(8, head_dim, generator=rng)
        mix = lambda: torch.randn(1, tokens, heads, 8, generator=rng).softmax(-1) @ basis * 4  # noqa: E731
        q, k = mix() + 0.3 * torch.randn(1, tokens, heads, head_dim, generator=rng), mix()
        v = torch.randn(1, tokens, heads, head_dim, generator=rng)
    nb = math.ceil(tokens / BLOCK)
    kv_indices, kv_counts = random_block_lists(1, heads, nb, rng, density=0.5)
    mask = token_mask_from_lists(kv_indices, kv_counts, None, tokens)
    ref, _ = dense_attention(q, k, v, mask)
    cuda = lambda *ts: [t.cuda() for t in ts]  # noqa: E731
    idx, cnt = cuda(kv_indices, kv_counts)
    torch.cuda.empty_cache()
    torch.full((1 << 24,), float("nan"), device="cuda")  # leave garbage behind for the outputs
    quantized = da.quantize_fp8(*cuda(q, k, v))
    out8, _ = da.sparse_attn_fp8(*quantized[:3], idx, cnt, *quantized[3:])
    out16, _ = da.sparse_attn(*cuda(q.bfloat16(), k.bfloat16(), v.bfloat16()), idx, cnt)
    live = mask.any(-1).transpose(1, 2)  # (batch, tokens, heads): rows with keys
    assert torch.isfinite(out8.float()).all()
    assert (out8.cpu().float()[~live] == 0).all()
    err8, err16 = rel_l2(out8.cpu()[live], ref[live]), rel_l2(out16.cpu()[live], ref[live])
    cos8 = cosine(out8.cpu()[live], ref[live])
    print(f"{inputs} d={head_dim}: fp8 rel L2 {err8:.2e} cos {cos8:.5f}; bf16 rel L2 {err16:.2e}")
    # Documented bounds (README "FP8"): e4m3 keeps 3 mantissa bits, so q, k, P and V each
    # round by up to 2^-4; measured on the H100: 5.2e-2 (random), 6.8e-2 / 1.1e-1 (structured,
    # d=128 / d=64) against 4-7e-3 for the bf16 kernel.
    max_err, min_cos = (0.08, 0.997) if inputs == "random" else (0.15, 0.99)
    assert err8 <= max_err and cos8 >= min_cos and err8 <= 30 * err16


@pytest.mark.requires_cuda_build
@pytest.mark.parametrize("head_dim", [64, 128])
def test_kernel_matches_reference_op_on_partial_blocks(rng, head_dim):
    """Same fp8 inputs through the kernel and through the CPU reference op, on lists of every
    length from 0 to all blocks: the kernel's main loop takes its own path for one, two, an odd
    and an even number of steps (S one step ahead at d=128, two-block steps at d=64)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the fp8 kernel needs sm_90")
    tokens, heads = 700, 3
    q, k, v = (torch.randn(2, tokens, heads, head_dim, generator=rng) for _ in range(3))
    quantized = da.quantize_fp8(q, k, v)
    nb = math.ceil(tokens / BLOCK)
    kv_indices, kv_counts = random_block_lists(2, heads, nb, rng)
    # Batch 0, head 1: query block r lists r + 1 blocks; batch 1, head 0: block 2 lists none,
    # block 1 only the last (partial) block.
    for row in range(nb):
        kv_indices[0, 1, row] = -1
        kv_indices[0, 1, row, : row + 1] = torch.randperm(nb, generator=rng)[: row + 1].sort().values
        kv_counts[0, 1, row] = row + 1
    kv_indices[1, 0, 1:3] = -1
    kv_indices[1, 0, 1, 0] = nb - 1
    kv_counts[1, 0, 1:3] = torch.tensor([1, 0])
    assert set(kv_counts.unique().tolist()) == set(range(nb + 1))
    block_lens = torch.randint(1, BLOCK + 1, (nb,), generator=rng, dtype=torch.int32)
    block_lens[-1] = min(int(block_lens[-1]), tokens - (nb - 1) * BLOCK)
    want, want_lse = da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:], block_lens)
    got, got_lse = da.sparse_attn_fp8(*(t.cuda() for t in quantized[:3]), kv_indices.cuda(), kv_counts.cuda(),
                                      *(t.cuda() for t in quantized[3:]), block_lens.cuda())
    finite = torch.isfinite(want_lse)
    assert torch.equal(finite, torch.isfinite(got_lse.cpu()))
    torch.testing.assert_close(got_lse.cpu()[finite], want_lse[finite], atol=2e-2, rtol=1e-2)
    assert rel_l2(got.cpu(), want) <= 0.05


@pytest.mark.requires_cuda_build
@pytest.mark.parametrize("head_dim", [64, 128])
def test_kernel_propagates_nan(rng, head_dim):
    """A NaN key makes every row whose list holds its block NaN (output and lse), and a NaN
    query element its own row; other rows stay finite. Head h's NaN key sits at offset
    17h % 128 of block 2, so the heads reach both of the kernel's exponential paths (LinearExp2,
    which by itself would turn a NaN score into a number: 12 of 16 probabilities at d=128, all
    at d=64)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the fp8 kernel needs sm_90")
    tokens, heads = 600, 16
    nb = math.ceil(tokens / BLOCK)
    q, k, v = (torch.randn(1, tokens, heads, head_dim, generator=rng) for _ in range(3))
    q8, k8, v_t8, *descales = (t.cuda() for t in da.quantize_fp8(q, k, v))
    nan_query = 4 * BLOCK + 7  # in the last, partial query block
    for h in range(heads):
        k8.view(torch.uint8)[0, 2 * BLOCK + 17 * h % 128, h, 3] = 0x7F
    q8.view(torch.uint8)[0, nan_query, :, 1] = 0x7F
    kv_indices, kv_counts = random_block_lists(1, heads, nb, rng, density=0.5)
    out, lse = da.sparse_attn_fp8(q8, k8, v_t8, kv_indices.cuda(), kv_counts.cuda(), *descales)
    lists_nan_block = (kv_indices == 2).any(-1)[0]  # (heads, query blocks)
    want_nan = lists_nan_block.T.repeat_interleave(BLOCK, 0)[:tokens]  # (tokens, heads)
    want_nan[nan_query] |= kv_counts[0, :, nan_query // BLOCK] > 0
    row_nan = out[0].float().isnan().all(-1).cpu()
    assert lists_nan_block.any() and not lists_nan_block.all()
    assert torch.equal(row_nan, want_nan)
    assert torch.equal(lse[0].isnan().cpu(), want_nan.T)
    assert torch.isfinite(out[0].float()[~want_nan]).all()


@pytest.mark.requires_cuda_build
@pytest.mark.parametrize("head_dim", [64, 128])
def test_kernel_follows_rising_maxima(rng, head_dim):
    """Scores that grow along each list, so the kernel's running row maxima keep moving, and
    every step rescales what came before: by about a unit a block (earlier blocks keep weights
    of 2^-1..2^-6), by about ten, and in one head by hundreds in one step (far past fp32's
    range for exponentials taken against the old maximum)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the fp8 kernel needs sm_90")
    tokens, heads = 850, 3
    nb = math.ceil(tokens / BLOCK)
    direction = torch.randn(head_dim, generator=rng)
    direction /= direction.norm()
    # Per head and block, how far the keys lean towards the queries' shared direction.
    lean = torch.stack([torch.linspace(0, 6, nb), torch.linspace(0, 60, nb),
                        torch.tensor([0, 1, 2, 3, 600, 605, 610])[:nb].float()]) * math.sqrt(head_dim)
    per_token = lean.repeat_interleave(BLOCK, 1)[:, :tokens].T  # (tokens, heads)
    noise = torch.randn(1, tokens, heads, head_dim, generator=rng)
    q = direction + noise - (noise @ direction)[..., None] * direction  # scores: lean + N(0, 1)
    k = per_token[None, :, :, None] * direction + torch.randn(1, tokens, heads, head_dim, generator=rng)
    v = torch.randn(1, tokens, heads, head_dim, generator=rng)
    quantized = da.quantize_fp8(q, k, v)
    kv_indices = torch.arange(nb, dtype=torch.int32).expand(1, heads, nb, nb).contiguous()
    kv_counts = torch.full((1, heads, nb), nb, dtype=torch.int32)
    want, want_lse = da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:])
    got, got_lse = da.sparse_attn_fp8(*(t.cuda() for t in quantized[:3]), kv_indices.cuda(), kv_counts.cuda(),
                                      *(t.cuda() for t in quantized[3:]))
    assert torch.isfinite(got.float()).all() and torch.isfinite(got_lse).all()
    torch.testing.assert_close(got_lse.cpu(), want_lse, atol=2e-2, rtol=1e-3)
    for head in range(heads):
        assert rel_l2(got.cpu()[:, :, head], want[:, :, head]) <= 0.05


# to_regions_and_quantize_fp8: the layout pass with the quantisation fused in.
FUSED_OUTPUTS = ("q_fp8", "k_fp8", "v_t_fp8", "q_descale", "k_descale", "v_descale", "q_pooled", "k_pooled")


def raw_bits(t):
    return t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t.view(torch.int32)


def assert_same_bits(got, want, names=FUSED_OUTPUTS):
    for name, g, w in zip(names, got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert torch.equal(raw_bits(g), raw_bits(w)), f"{name} differs"


def region_major(x, layout):
    """x in model order -> padded region-major through VideoLayout.region_index, padding rows zero
    (built with plain indexing, independent of the to_regions op)."""
    rows = layout.region_index()
    out = x.new_zeros(x.shape[0], layout.padded_tokens, *x.shape[2:])
    out[:, rows >= 0] = x[:, rows[rows >= 0]]
    return out


@pytest.mark.parametrize("geometry", [(2, 30, 52, 0, False), (1, 45, 80, 200, False), (3, 16, 32, 77, True),
                                      (2, 24, 20, 130, True)])
@pytest.mark.parametrize("head_dim,dtype", [(64, torch.bfloat16), (128, torch.float16), (128, torch.float32)])
def test_fused_reference_is_the_composition(rng, geometry, head_dim, dtype):
    frames, height, width, text_len, text_first = geometry
    layout = da.VideoLayout(frames, height, width, text_len=text_len, text_first=text_first)
    q, k, v = ((torch.randn(2, layout.tokens, 3, head_dim, generator=rng) * 4).to(dtype) for _ in range(3))
    got = da.to_regions_and_quantize_fp8(q, k, v, layout)
    regions = [region_major(x, layout) for x in (q, k, v)]
    pooled = [torch.ops.draftattn.mean_pool(x, *layout.op_args) for x in (q, k)]
    assert_same_bits(got, (*da.quantize_fp8(*regions), *pooled))
    assert_same_bits(got, (*da.quantize_fp8(*torch.ops.draftattn.to_regions_and_pool(q, k, v, *layout.op_args)[:3]),
                           *torch.ops.draftattn.to_regions_and_pool(q, k, v, *layout.op_args)[3:]))


def test_fused_region_shape_and_opcheck(rng):
    layout = da.VideoLayout(2, 20, 30, region=(16, 8), text_len=40)
    q, k, v = (torch.randn(1, layout.tokens, 2, 64, generator=rng) for _ in range(3))
    got = da.to_regions_and_quantize_fp8(q, k, v, layout)
    assert got[0].shape == (1, layout.padded_tokens, 2, 64) and got[2].shape == (1, 2, 64, layout.padded_tokens)
    assert got[6].shape == (1, 2, layout.num_regions, 64) and got[3].shape == (1, 2, layout.num_blocks)
    assert_same_bits(got, (*da.quantize_fp8(*(region_major(x, layout) for x in (q, k, v))),
                           *(torch.ops.draftattn.mean_pool(x, *layout.op_args) for x in (q, k))))
    torch.library.opcheck(torch.ops.draftattn.to_regions_and_quantize_fp8.default, (q, k, v, *layout.op_args))


def test_fused_errors_name_the_argument(rng):
    layout = da.VideoLayout(1, 8, 16)
    q = torch.randn(1, layout.tokens, 2, 64, generator=rng).bfloat16()
    fused = torch.ops.draftattn.to_regions_and_quantize_fp8
    with pytest.raises(RuntimeError, match="head_dim \\(last dim of q, k, v\\) must be 64 or 128"):
        fused(*(torch.randn(1, layout.tokens, 2, 32) for _ in range(3)), *layout.op_args)
    with pytest.raises(RuntimeError, match="q has 128 tokens but the layout needs 256"):
        fused(q, q, q, 2, 8, 16)
    with pytest.raises(RuntimeError, match="region_h \\* region_w must equal the attention block size 128"):
        fused(q, q, q, 1, 8, 16, 8, 8)
    with pytest.raises(RuntimeError, match="k must have the same dtype as q"):
        fused(q, q.half(), q, *layout.op_args)
    with pytest.raises(RuntimeError, match="k and v must have the shape of q"):
        fused(q, q, q[:, :, :1], *layout.op_args)


@pytest.mark.parametrize("text_first", [False, True])
def test_draft_attention_fp8_is_the_unfused_pipeline(rng, text_first):
    """draft_attention(precision="fp8") on the fused pass gives the output of layout -> select ->
    quantize_fp8 -> sparse_attn_fp8 -> inverse layout, bit for bit."""
    layout = da.VideoLayout(2, 12, 40, text_len=50, text_first=text_first)
    q, k, v = (torch.randn(1, layout.tokens, 2, 64, generator=rng).bfloat16() for _ in range(3))
    ops = torch.ops.draftattn
    q_r, k_r, v_r, q_p, k_p = ops.to_regions_and_pool(q, k, v, *layout.op_args)
    kv_indices, kv_counts = ops.draft_select(q_p, k_p, "global", 0.5, 0.9, layout.text_blocks, text_first)
    quantized = da.quantize_fp8(q_r, k_r, v_r)
    out, lse = da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:], layout.block_lens())
    want = ops.from_regions(out.bfloat16(), *layout.op_args)
    got, stats = da.draft_attention(q, k, v, layout, sparsity=0.5, precision="fp8", return_stats=True)
    assert torch.equal(got, want) and torch.equal(stats["lse"], lse)
    assert torch.equal(stats["kv_indices"], kv_indices) and torch.equal(stats["kv_counts"], kv_counts)
