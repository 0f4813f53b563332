"""Independent test oracles: token masks from block lists and dense fp32 attention."""
import torch

BLOCK = 128


def token_mask_from_lists(kv_indices, kv_counts, block_lens, tokens):
    """(batch, heads, tokens, tokens) bool built block by block with plain loops."""
    batch, heads, num_blocks, _ = kv_indices.shape
    mask = torch.zeros(batch, heads, tokens, tokens, dtype=torch.bool)
    for b in range(batch):
        if block_lens is None:
            lens = [min(BLOCK, tokens - BLOCK * i) for i in range(num_blocks)]
        else:  # (num_blocks,) or one row per batch entry
            lens = (block_lens if block_lens.dim() == 1 else block_lens[b]).tolist()
        for h in range(heads):
            for i in range(num_blocks):
                for j in kv_indices[b, h, i, : int(kv_counts[b, h, i])].tolist():
                    mask[b, h, BLOCK * i: BLOCK * i + lens[i], BLOCK * j: BLOCK * j + lens[j]] = True
    return mask


def dense_attention(q, k, v, mask=None, scale=None):
    """fp32 softmax attention, (batch, tokens, heads, dim) layout. Rows that may see no key get
    out 0 and lse -inf. Returns (out fp32, lse fp32 (batch, heads, tokens))."""
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = qf @ kf.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, -1)
    empty = torch.isinf(lse)
    probs = torch.softmax(scores.masked_fill(empty.unsqueeze(-1), 0.0), -1).masked_fill(empty.unsqueeze(-1), 0.0)
    return (probs @ vf).transpose(1, 2), lse


def random_qkv(shape, dtype, generator):
    return [torch.randn(shape, generator=generator).to(dtype) for _ in range(3)]


def random_block_lists(batch, heads, num_blocks, generator, density=0.4):
    """Ascending random lists, -1 past each count; rows may be empty or full."""
    keep = torch.rand(batch, heads, num_blocks, num_blocks, generator=generator) < density
    keep[..., 0, :] = False
    keep[..., -1, :] = True
    counts = keep.sum(-1).to(torch.int32)
    columns = torch.where(keep, torch.arange(num_blocks), num_blocks).sort(-1).values
    return torch.where(columns == num_blocks, -1, columns).to(torch.int32), counts
