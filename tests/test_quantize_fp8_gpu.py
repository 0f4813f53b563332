"""The CUDA quantize_fp8 against the CPU reference op: e4m3 bytes and descales must be
bit-identical. Both divide in correctly rounded fp32 (amax / 448, then x / descale) and round
to e4m3 as ATen's CPU conversion does (nearest even, saturating at 448). Covers partial last
blocks, both head dims and 16-bit dtypes, all-zero groups, bf16 subnormals, strided,
misaligned and non-unit-last-stride inputs, the fp32 fallback and a CUDA-graph capture.
NaN and inf inputs are left out: the sign of a NaN that a division creates differs between
x86 and the GPU."""
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
