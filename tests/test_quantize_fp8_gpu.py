"""The CUDA quantize_fp8 against the CPU reference op: e4m3 bytes and descales must be
bit-identical. Both divide in correctly rounded fp32 (amax / 448, then x / descale) and round
to e4m3 as ATen's CPU conversion does (nearest even, saturating at 448). Covers partial last
blocks, both head dims and 16-bit dtypes, all-zero groups, bf16 subnormals, strided,
misaligned and non-unit-last-stride inputs, inf and NaN inputs (every e4m3 value takes its
input's sign, NaN included), the fp32 fallback and a CUDA-graph capture."""
import pytest
import torch

import draftattn_cuda as da

pytestmark = pytest.mark.requires_cuda_build
OUTPUTS = ("q_fp8", "k_fp8", "v_t_fp8", "q_descale", "k_descale", "v_descale")


def bits(t):
    return t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t.view(torch.int32)


def assert_matches_reference(got, q, k, v):
    want = da.quantize_fp8(q.cpu(), k.cpu(), v.cpu())
    for name, g, w in zip(OUTPUTS, got, want):
        assert g.is_cuda and g.is_contiguous(), name
        assert g.shape == w.shape and g.dtype == w.dtype, name
        differing = (bits(g.cpu()) != bits(w)).sum().item()
        assert differing == 0, f"{name}: {differing} of {w.numel()} values differ from the reference"


def random_qkv(shape, dtype, gen):
    """Values spread over many magnitudes, so blocks and heads get different descales."""
    def one():
        x = torch.randn(shape, generator=gen)
        return (x * torch.exp(2 * torch.randn(shape[:3] + (1,), generator=gen))).to(dtype).cuda()
    return one(), one(), one()


@pytest.mark.parametrize("tokens", [128, 300, 1000, 7560])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matches_reference(rng, tokens, head_dim, dtype):
    q, k, v = random_qkv((2, tokens, 3, head_dim), dtype, rng)
    assert_matches_reference(da.quantize_fp8(q, k, v), q, k, v)


def test_all_zero_groups_get_descale_one(rng):
    q, k, v = random_qkv((1, 1000, 2, 128), torch.bfloat16, rng)
    q[:, 128:256] = 0  # one block of every head
    k[:, 896:, 1] = 0  # the partial last block of one head
    v[:, :, 0] = 0  # a whole head
    got = da.quantize_fp8(q, k, v)
    assert (got[3][:, :, 1] == 1).all() and (got[4][:, 1, 7] == 1).all() and (got[5][:, 0] == 1).all()
    assert_matches_reference(got, q, k, v)


def test_bf16_subnormals(rng):
    """Blocks whose amax / 448 is an fp32 subnormal: the divisions must keep subnormals."""
    q, k, v = (torch.randn(1, 256, 2, 64, generator=rng) * 1e-39 for _ in range(3))
    q, k, v = (x.bfloat16().cuda() for x in (q, k, v))
    assert_matches_reference(da.quantize_fp8(q, k, v), q, k, v)


def test_views_of_fused_qkv(rng):
    """q, k, v as views of one (batch, tokens, 3, heads, head_dim) projection: 16-byte aligned
    strides that are not the contiguous ones."""
    qkv = torch.randn(2, 1000, 3, 4, 128, generator=rng).bfloat16().cuda()
    q, k, v = qkv.unbind(2)
    assert_matches_reference(da.quantize_fp8(q, k, v), q, k, v)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_misaligned_and_transposed_inputs(rng, head_dim):
    """Strides that are no multiple of 16 bytes (the scalar path) and a non-unit last stride."""
    padded = torch.randn(1, 700, 3, head_dim + 1, generator=rng).half().cuda()
    q = padded[..., 1:]
    k = torch.randn(1, 700, head_dim, 3, generator=rng).half().cuda().transpose(2, 3)
    v = torch.randn(1, 700, 3, head_dim, generator=rng).half().cuda()
    assert_matches_reference(da.quantize_fp8(q, k, v), q, k, v)


def test_fp32_inputs_fall_back_to_reference(rng):
    q, k, v = (torch.randn(1, 300, 2, 64, generator=rng).cuda() for _ in range(3))
    assert_matches_reference(da.quantize_fp8(q, k, v), q, k, v)


def test_errors_come_from_the_reference(rng):
    q = torch.randn(1, 8, 1, 32, generator=rng).bfloat16().cuda()
    with pytest.raises(RuntimeError, match="head_dim must be 64 or 128"):
        da.quantize_fp8(q, q, q)
    with pytest.raises(RuntimeError, match="k and v must have the shape of q"):
        da.quantize_fp8(torch.zeros(1, 8, 1, 64, device="cuda"), torch.zeros(1, 9, 1, 64, device="cuda"),
                        torch.zeros(1, 8, 1, 64, device="cuda"))


def test_opcheck(rng):
    q, k, v = random_qkv((1, 300, 2, 64), torch.bfloat16, rng)
    torch.library.opcheck(torch.ops.draftattn.quantize_fp8.default, (q, k, v))


def test_cuda_graph_capture(rng):
    shape = (1, 1000, 2, 128)
    static = [torch.zeros(shape, dtype=torch.bfloat16, device="cuda") for _ in range(3)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the capture, as torch.cuda.graphs asks
        da.quantize_fp8(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = da.quantize_fp8(*static)
    inputs = random_qkv(shape, torch.bfloat16, rng)
    for s, x in zip(static, inputs):
        s.copy_(x)
    graph.replay()
    torch.cuda.synchronize()
    assert_matches_reference(captured, *inputs)


# to_regions_and_quantize_fp8: model order -> the six quantize_fp8 outputs plus the region means.
FUSED_OUTPUTS = OUTPUTS + ("q_pooled", "k_pooled")
GEOMETRIES = [  # frames, height, width, region, text_len, text_first
    (2, 30, 52, (8, 16), 0, False),     # partial regions on both edges
    (1, 45, 80, (8, 16), 0, False),     # partial region rows
    (2, 30, 52, (8, 16), 226, False),   # text after the video, partial last text block
    (2, 45, 80, (8, 16), 300, True),    # text before
    (3, 16, 32, (8, 16), 128, True),    # whole regions, one whole text block
    (2, 20, 30, (16, 8), 77, False),    # another region shape
]


def unfused(q, k, v, layout):
    """The separate ops: to_regions_and_pool, then quantize_fp8 of its region-major tensors."""
    regions = torch.ops.draftattn.to_regions_and_pool(q, k, v, *layout.op_args)
    return (*da.quantize_fp8(*regions[:3]), *regions[3:])


def assert_fused_matches(got, q, k, v, layout):
    """Bit-identical to the separate CUDA ops; the e4m3 outputs bit-identical to the CPU reference,
    the region means within fp32 summation-order rounding of it (the CPU sums in another order)."""
    for name, g, w in zip(FUSED_OUTPUTS, got, unfused(q, k, v, layout), strict=True):
        assert g.is_cuda and g.is_contiguous() and g.shape == w.shape and g.dtype == w.dtype, name
        differing = (bits(g) != bits(w)).sum().item()
        assert differing == 0, f"{name}: {differing} of {w.numel()} values differ from the separate CUDA ops"
    want = da.to_regions_and_quantize_fp8(q.cpu(), k.cpu(), v.cpu(), layout)
    for name, g, w in zip(FUSED_OUTPUTS[:6], got, want):
        differing = (bits(g.cpu()) != bits(w)).sum().item()
        assert differing == 0, f"{name}: {differing} of {w.numel()} values differ from the CPU reference"
    for g, w in zip(got[6:], want[6:]):  # a region holding inf and -inf (or a NaN) has a NaN mean
        torch.testing.assert_close(g.cpu(), w, rtol=1e-5, atol=1e-5, equal_nan=True)


def layout_of(geometry):
    frames, height, width, region, text_len, text_first = geometry
    return da.VideoLayout(frames, height, width, region, text_len, text_first)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("batch,head_dim,dtype", [(1, 128, torch.bfloat16), (2, 64, torch.bfloat16),
                                                  (2, 128, torch.float16)])
def test_fused_matches_separate_ops_and_reference(rng, geometry, batch, head_dim, dtype):
    layout = layout_of(geometry)
    q, k, v = random_qkv((batch, layout.tokens, 3, head_dim), dtype, rng)
    assert_fused_matches(da.to_regions_and_quantize_fp8(q, k, v, layout), q, k, v, layout)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_fused_on_strided_inputs(rng, head_dim):
    """Views of one fused qkv projection (aligned strides: the vector path), then strides that are
    no multiple of 16 bytes (the scalar path) and a non-unit last stride (copied first)."""
    layout = da.VideoLayout(2, 30, 52, text_len=40)
    qkv = torch.randn(2, layout.tokens, 3, 4, head_dim, generator=rng).bfloat16().cuda()
    q, k, v = qkv.unbind(2)
    assert_fused_matches(da.to_regions_and_quantize_fp8(q, k, v, layout), q, k, v, layout)
    padded = torch.randn(1, layout.tokens, 3, head_dim + 1, generator=rng).half().cuda()
    q = padded[..., 1:]
    k = torch.randn(1, layout.tokens, head_dim, 3, generator=rng).half().cuda().transpose(2, 3)
    v = torch.randn(1, layout.tokens, 3, head_dim, generator=rng).half().cuda()
    assert_fused_matches(da.to_regions_and_quantize_fp8(q, k, v, layout), q, k, v, layout)


def test_fused_zero_groups_and_fp32_fallback(rng):
    layout = da.VideoLayout(1, 30, 52, text_len=100)
    q, k, v = random_qkv((1, layout.tokens, 2, 128), torch.bfloat16, rng)
    q[:, :52 * 8] = 0  # the first region row of every head: whole regions all zero
    v[:, :, 1] = 0  # a whole head of v
    got = da.to_regions_and_quantize_fp8(q, k, v, layout)
    assert (got[3][:, :, 0] == 1).all() and (got[5][:, 1] == 1).all()
    assert_fused_matches(got, q, k, v, layout)
    q, k, v = (x.float() for x in (q, k, v))
    assert_fused_matches(da.to_regions_and_quantize_fp8(q, k, v, layout), q, k, v, layout)


def test_inf_and_nan_inputs(rng):
    """A group whose max is inf divides by inf: its infinities become NaN (0x7f / 0xff by the
    input's sign) and its finite values zeros; a group with a NaN keeps descale 1 and its
    values past 448 saturate. fp16 inputs reach inf by overflow, so the random ones here can
    too."""
    layout = da.VideoLayout(1, 30, 52, text_len=100)
    q, k, v = random_qkv((1, layout.tokens, 2, 128), torch.float16, rng)
    k[0, 5, 0, 3], k[0, 7, 0, 9] = float("inf"), -float("inf")
    q[0, 200, 1, 0], v[0, 17, 1, 4] = float("nan"), -float("inf")
    got = da.quantize_fp8(q, k, v)
    assert_matches_reference(got, q, k, v)
    k8 = got[1].view(torch.uint8)
    assert k8[0, 5, 0, 3] == 0x7F and k8[0, 7, 0, 9] == 0xFF
    assert_fused_matches(da.to_regions_and_quantize_fp8(q, k, v, layout), q, k, v, layout)


def test_fused_errors_and_opcheck(rng):
    layout = da.VideoLayout(1, 8, 16)
    q = torch.randn(1, layout.tokens, 2, 32, generator=rng).bfloat16().cuda()
    with pytest.raises(RuntimeError, match="head_dim \\(last dim of q, k, v\\) must be 64 or 128"):
        da.to_regions_and_quantize_fp8(q, q, q, layout)
    with pytest.raises(RuntimeError, match="q has 128 tokens but the layout needs 256"):
        da.to_regions_and_quantize_fp8(q, q, q, da.VideoLayout(2, 8, 16))
    layout = da.VideoLayout(1, 30, 52, text_len=40)
    q, k, v = random_qkv((1, layout.tokens, 2, 64), torch.bfloat16, rng)
    torch.library.opcheck(torch.ops.draftattn.to_regions_and_quantize_fp8.default, (q, k, v, *layout.op_args))


def test_fused_cuda_graph_capture(rng):
    layout = da.VideoLayout(2, 30, 52, text_len=40, text_first=True)
    shape = (1, layout.tokens, 2, 128)
    static = [torch.zeros(shape, dtype=torch.bfloat16, device="cuda") for _ in range(3)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        da.to_regions_and_quantize_fp8(*static, layout)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = da.to_regions_and_quantize_fp8(*static, layout)
    inputs = random_qkv(shape, torch.bfloat16, rng)
    for s, x in zip(static, inputs):
        s.copy_(x)
    graph.replay()
    torch.cuda.synchronize()
    assert_fused_matches(captured, *inputs, layout)


def test_draft_attention_fp8_matches_the_unfused_pipeline(rng):
    """draft_attention(precision="fp8") on the fused pass equals the separate ops end to end."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the fp8 attention kernel needs sm_90")
    layout = da.VideoLayout(3, 30, 52, text_len=100)
    q, k, v = random_qkv((1, layout.tokens, 2, 128), torch.bfloat16, rng)
    ops = torch.ops.draftattn
    q_r, k_r, v_r, q_p, k_p = ops.to_regions_and_pool(q, k, v, *layout.op_args)
    kv_indices, kv_counts = ops.draft_select(q_p, k_p, "global", 0.7, 0.9, layout.text_blocks, False)
    quantized = da.quantize_fp8(q_r, k_r, v_r)
    out, _ = da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:], layout.block_lens("cuda"))
    want = ops.from_regions(out, *layout.op_args)
    assert torch.equal(da.draft_attention(q, k, v, layout, sparsity=0.7, precision="fp8"), want)
