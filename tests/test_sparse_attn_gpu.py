"""The CUDA sparse_attn kernel against an fp32 dense reference under the same token-level
mask, on fresh random inputs: partial blocks, sequence tails, empty and uneven rows, model
shapes, poisoned memory, CUDA-graph capture."""
import math

import pytest
import torch

import draftattn_cuda  # noqa: F401  (registers the ops)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0),
    reason="needs an sm_90 GPU (H100/H200) for the Hopper attention kernel",
)
BLOCK = 128


def random_block_lists(batch, heads, num_blocks, density, uneven, gen, device):
    """Sorted kv block lists (-1 past the count); uneven rows range from empty to 2x density."""
    shape = (batch, heads, num_blocks)
    if uneven:
        counts = torch.randint(0, max(1, round(2 * density * num_blocks)) + 1, shape, generator=gen)
    else:
        counts = torch.full(shape, max(1, round(density * num_blocks)))
    counts = counts.clamp(max=num_blocks)
    rank = torch.rand(*shape, num_blocks, generator=gen).argsort(-1).argsort(-1)
    keep = rank < counts.unsqueeze(-1)
    cols = torch.arange(num_blocks).expand_as(keep)
    indices = torch.where(keep, cols, num_blocks).sort(-1).values
    indices = torch.where(indices == num_blocks, -1, indices)
    return indices.int().to(device), counts.int().to(device)


def region_block_lens(frames, height, width, text_len=0, text_first=False, rh=8, rw=16):
    """Valid rows of each block of the padded region-major layout (docs/CONTRACT.md)."""
    rows = [min(rh, height - y) for y in range(0, height, rh)]
    cols = [min(rw, width - x) for x in range(0, width, rw)]
    video = [r * c for _ in range(frames) for r in rows for c in cols]
    text = [min(BLOCK, text_len - t) for t in range(0, text_len, BLOCK)]
    return torch.tensor(text + video if text_first else video + text, dtype=torch.int32)


def token_key_mask(kv_indices, kv_counts, block_lens, tokens):
    """(batch, heads, num_blocks, tokens): which keys each query block may attend to."""
    b, h, nb, max_blocks = kv_indices.shape
    listed = torch.arange(max_blocks, device=kv_indices.device) < kv_counts.unsqueeze(-1)
    allowed = torch.zeros(b, h, nb, nb + 1, dtype=torch.bool, device=kv_indices.device)
    allowed.scatter_(-1, torch.where(listed, kv_indices.long(), nb), True)
    token_block = torch.arange(tokens, device=kv_indices.device) // BLOCK
    offset = torch.arange(tokens, device=kv_indices.device) % BLOCK
    key_valid = offset < block_lens_2d(block_lens, nb).to(kv_indices.device)[:, token_block]
    return allowed[..., :nb][..., token_block] & key_valid[:, None, None, :]


def block_lens_2d(block_lens, nb):
    """(1 or batch, nb) long: block_lens as given, or every block full."""
    return torch.full((1, nb), BLOCK) if block_lens is None else block_lens.cpu().long().view(-1, nb)


def reference_rows(q, k, v, key_mask, q_blocks, scale):
    """fp32 dense attention for the rows of the given query blocks; -inf lse for empty rows."""
    tokens = q.shape[1]
    outs, lses = [], []
    for qb in q_blocks:
        rows = slice(qb * BLOCK, min((qb + 1) * BLOCK, tokens))
        s = torch.einsum("bqhd,bkhd->bhqk", q[:, rows].float(), k.float()) * scale
        s = s.masked_fill(~key_mask[:, :, qb, None, :], float("-inf"))
        lse = torch.logsumexp(s, -1)
        p = torch.exp(s - torch.where(torch.isfinite(lse), lse, 0).unsqueeze(-1))
        outs.append(torch.einsum("bhqk,bkhd->bqhd", p, v.float()))
        lses.append(lse)
    return torch.cat(outs, 1), torch.cat(lses, 2)


def bf16_sdpa_rows(q, k, v, key_mask, q_blocks, scale):
    """PyTorch's own low-precision attention on the same rows: the error yardstick."""
    tokens = q.shape[1]
    outs = []
    for qb in q_blocks:
        rows = slice(qb * BLOCK, min((qb + 1) * BLOCK, tokens))
        mask = key_mask[:, :, qb, None, :].expand(-1, -1, rows.stop - rows.start, -1)
        o = torch.nn.functional.scaled_dot_product_attention(
            q[:, rows].transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, scale=scale)
        outs.append(o.transpose(1, 2).float())
    return torch.cat(outs, 1)


def gather_rows(x, q_blocks, tokens):
    return torch.cat([x[:, qb * BLOCK:min((qb + 1) * BLOCK, tokens)] for qb in q_blocks], 1)


def poison_allocator(nbytes, device="cuda"):
    """Leave NaN garbage in the caching allocator so an unwritten output cannot pass."""
    junk = torch.full((nbytes // 4,), float("nan"), device=device)
    del junk


def check_against_reference(q, k, v, kv_indices, kv_counts, block_lens, q_blocks, scale=None):
    tokens, head_dim = q.shape[1], q.shape[3]
    scale = scale if scale is not None else 1 / math.sqrt(head_dim)
    poison_allocator(q.numel() * q.element_size() * 2 + q.shape[0] * q.shape[2] * tokens * 4)
    out, lse = torch.ops.draftattn.sparse_attn(q, k, v, kv_indices, kv_counts, block_lens, scale)
    key_mask = token_key_mask(kv_indices, kv_counts, block_lens, tokens)
    ref_out, ref_lse = reference_rows(q, k, v, key_mask, q_blocks, scale)

    out_rows = gather_rows(out, q_blocks, tokens).float()
    lse_rows = torch.cat([lse[:, :, qb * BLOCK:min((qb + 1) * BLOCK, tokens)] for qb in q_blocks], 2)
    assert torch.isfinite(out_rows).all(), "output has NaN/inf: some element was not written"

    # Padding rows of a query block and rows with no keys: exactly 0 and lse -inf.
    row_block = torch.cat([torch.full((min(BLOCK, tokens - qb * BLOCK),), qb) for qb in q_blocks])
    row_offset = torch.cat([torch.arange(min(BLOCK, tokens - qb * BLOCK)) for qb in q_blocks])
    lens = block_lens_2d(block_lens, kv_counts.shape[2])
    padding_row = (row_offset >= lens[:, row_block]).to(q.device)  # (1 or batch, rows)
    has_keys = key_mask[:, :, row_block].any(-1).transpose(1, 2)  # (batch, rows, heads)
    live = has_keys & ~padding_row[:, :, None]
    assert (out_rows[~live] == 0).all()
    assert torch.isneginf(lse_rows.transpose(1, 2)[~live]).all()
    if not live.any():
        return
    sdpa = bf16_sdpa_rows(q, k, v, key_mask, q_blocks, scale)
    ours_err = (out_rows - ref_out)[live]
    sdpa_err = (sdpa - ref_out)[live]
    ref_norm = ref_out[live].norm()
    assert ours_err.norm() / ref_norm <= 2 * sdpa_err.norm() / ref_norm + 1e-3
    assert ours_err.abs().max() <= 2 * sdpa_err.abs().max() + 2e-3
    torch.testing.assert_close(lse_rows.transpose(1, 2)[live], ref_lse.transpose(1, 2)[live], atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("density,uneven", [(1.0, False), (0.5, True), (0.25, False), (0.05, True)])
def test_random_lists_partial_blocks(dtype, head_dim, density, uneven):
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    batch, heads, tokens = 2, 3, 1000  # 8 blocks, the last one 104 rows
    nb = math.ceil(tokens / BLOCK)
    q, k, v = (torch.randn(batch, tokens, heads, head_dim, generator=gen).to("cuda", dtype) for _ in range(3))
    kv_indices, kv_counts = random_block_lists(batch, heads, nb, density, uneven, gen, "cuda")
    block_lens = torch.randint(1, BLOCK + 1, (nb,), generator=gen, dtype=torch.int32)
    block_lens[-1] = min(int(block_lens[-1]), tokens - (nb - 1) * BLOCK)
    # One row per batch entry (e.g. per-sample text lengths), empty blocks included.
    per_batch_lens = torch.randint(0, BLOCK + 1, (batch, nb), generator=gen, dtype=torch.int32)
    per_batch_lens[:, -1].clamp_(max=tokens - (nb - 1) * BLOCK)
    per_batch_lens[1, 2] = 0
    for lens in (None, block_lens.cuda(), per_batch_lens.cuda()):
        check_against_reference(q, k, v, kv_indices, kv_counts, lens, list(range(nb)))


def test_strided_inputs_and_custom_scale():
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    qkv = torch.randn(1, 700, 3, 4, 128, generator=gen).to("cuda", torch.bfloat16)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # token stride 12*128, not contiguous
    nb = math.ceil(700 / BLOCK)
    kv_indices, kv_counts = random_block_lists(1, 4, nb, 0.5, True, gen, "cuda")
    check_against_reference(q, k, v, kv_indices, kv_counts, None, list(range(nb)), scale=0.05)


MODEL_SHAPES = {  # name: (frames, height, width, text_len, text_first, head_dim)
    "wan1.3b_480p": (21, 30, 52, 0, False, 128),
    "wan14b_720p": (21, 45, 80, 0, False, 128),
    "hunyuan_720p": (33, 45, 80, 256, False, 128),
    "cogvideox_480p": (13, 30, 45, 226, True, 64),
}


@pytest.mark.parametrize("name", list(MODEL_SHAPES))
def test_model_shapes(name):
    frames, height, width, text_len, text_first, head_dim = MODEL_SHAPES[name]
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    block_lens = region_block_lens(frames, height, width, text_len, text_first)
    nb = block_lens.numel()
    tokens = nb * BLOCK
    heads = 2
    q, k, v = (torch.randn(1, tokens, heads, head_dim, generator=gen).to("cuda", torch.bfloat16) for _ in range(3))
    kv_indices, kv_counts = random_block_lists(1, heads, nb, 0.1, True, gen, "cuda")
    sample = sorted(set(torch.randint(0, nb, (5,), generator=gen).tolist()) | {0, nb - 1})
    check_against_reference(q, k, v, kv_indices, kv_counts, block_lens.cuda(), sample)


def test_cuda_graph_capture_matches_eager():
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    q, k, v = (torch.randn(1, 1024, 2, 128, generator=gen).to("cuda", torch.bfloat16) for _ in range(3))
    kv_indices, kv_counts = random_block_lists(1, 2, 8, 0.5, True, gen, "cuda")
    eager = torch.ops.draftattn.sparse_attn(q, k, v, kv_indices, kv_counts)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = torch.ops.draftattn.sparse_attn(q, k, v, kv_indices, kv_counts)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(eager[0], captured[0]) and torch.equal(eager[1], captured[1])
