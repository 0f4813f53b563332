"""Exact dense attention (fp32) and the scores of a sparse result against it."""
import torch

from .blocks import keep_to_lists

# Elements of one chunk of fp32 scores in dense_reference (1 GiB): small shapes take 1024 query
# rows at a time, a full Wan-14B shape about 80.
CHUNK_ELEMENTS = 1 << 28


def token_blocks(layout, device="cpu"):
    """(tokens,) int64: the block of every model-order token."""
    return layout.model_index(device) // 128


def dense_reference(q, k, v, layout):
    """Dense fp32 attention over q, k, v (1, tokens, heads, dim) in model order, in query chunks
    so the full map is never held.

    Returns (out (1, tokens, heads, dim) fp32, block_mass (1, heads, nb, nb)): block_mass[i, j]
    is the softmax mass that the query tokens of block i put on the key tokens of block j.
    Keys run in region-major order (padding rows masked out), so a key block's mass is a sum
    over 128 consecutive columns.
    """
    device, heads = q.device, q.shape[2]
    nb = layout.num_blocks
    key_bias = torch.where(layout.region_index(device) >= 0, 0.0, float("-inf"))
    kf, vf = (layout.to_regions(t).float().transpose(1, 2) for t in (k, v))
    qf = q.float().transpose(1, 2)
    query_blocks = token_blocks(layout, device)
    scale = q.shape[-1] ** -0.5
    rows_per_chunk = max(1, min(1024, CHUNK_ELEMENTS // (heads * layout.padded_tokens)))
    outs = []
    mass = torch.zeros(1, heads, nb, nb, device=device)
    for start in range(0, layout.tokens, rows_per_chunk):
        stop = min(start + rows_per_chunk, layout.tokens)
        probs = torch.softmax(qf[:, :, start:stop] @ kf.transpose(-1, -2) * scale + key_bias, -1)
        outs.append(probs @ vf)
        mass.index_add_(2, query_blocks[start:stop], probs.view(1, heads, stop - start, nb, 128).sum(-1))
    return torch.cat(outs, 2).transpose(1, 2), mass


def mass_recall(block_mass, keep, layout):
    """Fraction of each query token's softmax mass inside its kept key blocks, averaged over tokens and heads."""
    heads = block_mass.shape[1]
    return ((block_mass * keep).sum() / (heads * layout.tokens)).item()


def sparse_output(q, k, v, keep, layout):
    """sparse_attn (on q's device: the CPU reference or the CUDA kernel) over the kept blocks, in model order."""
    kv_indices, kv_counts = keep_to_lists(keep)
    out, _ = torch.ops.draftattn.sparse_attn(layout.to_regions(q), layout.to_regions(k), layout.to_regions(v),
                                             kv_indices, kv_counts, layout.block_lens(q.device), None)
    return layout.from_regions(out)


def relative_l2(got, want):
    return (torch.linalg.vector_norm(got.float() - want) / torch.linalg.vector_norm(want)).item()


def mean_cosine(got, want):
    """Cosine similarity of each token's output vector per head, averaged."""
    return torch.nn.functional.cosine_similarity(got.float(), want, dim=-1).mean().item()


def token_pair_density(keep, layout):
    """Kept fraction of (valid query, valid key) token pairs, averaged over heads."""
    lens = layout.block_lens(keep.device).double()
    return ((lens[:, None] * lens[None, :] * keep).sum((-1, -2)) / layout.tokens**2).mean().item()
