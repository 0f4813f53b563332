"""Exact dense attention (fp32) and the scores of a sparse result against it."""
import torch

from .blocks import keep_to_lists


def token_blocks(layout):
    """(tokens,) int64: the block of every model-order token."""
    return layout.model_index() // 128


def dense_reference(q, k, v, layout, rows_per_chunk=1024):
    """Dense fp32 attention in model order, in query chunks so the full map is never held.

    Returns (out (1, tokens, heads, dim), row_block_mass (1, heads, tokens, nb)): the softmax
    mass each query token puts on each key block.
    """
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
    members = torch.nn.functional.one_hot(token_blocks(layout), layout.num_blocks).float()
    scale = q.shape[-1] ** -0.5
    outs, masses = [], []
    for start in range(0, layout.tokens, rows_per_chunk):
        probs = torch.softmax(qf[:, :, start:start + rows_per_chunk] @ kf.transpose(-1, -2) * scale, -1)
        outs.append(probs @ vf)
        masses.append(probs @ members)
    return torch.cat(outs, 2).transpose(1, 2), torch.cat(masses, 2)


def block_mass(row_block_mass, layout):
    """(1, heads, nb, nb): total softmax mass of each (query block, key block) pair."""
    members = torch.nn.functional.one_hot(token_blocks(layout), layout.num_blocks).float()
    return members.T @ row_block_mass


def mass_recall(row_block_mass, keep, layout):
    """Fraction of each query token's softmax mass inside its kept key blocks, averaged over tokens and heads."""
    kept_for_token = keep[:, :, token_blocks(layout)]
    return (row_block_mass * kept_for_token).sum(-1).mean().item()


def sparse_output(q, k, v, keep, layout):
    """sparse_attn (the CPU reference) over the kept blocks, run region-major, returned in model order."""
    kv_indices, kv_counts = keep_to_lists(keep)
    out, _ = torch.ops.draftattn.sparse_attn(layout.to_regions(q), layout.to_regions(k), layout.to_regions(v),
                                             kv_indices, kv_counts, layout.block_lens(), None)
    return layout.from_regions(out)


def relative_l2(got, want):
    return (torch.linalg.vector_norm(got.float() - want) / torch.linalg.vector_norm(want)).item()


def mean_cosine(got, want):
    """Cosine similarity of each token's output vector per head, averaged."""
    return torch.nn.functional.cosine_similarity(got.float(), want, dim=-1).mean().item()


def token_pair_density(keep, layout):
    """Kept fraction of (valid query, valid key) token pairs, averaged over heads."""
    lens = layout.block_lens().double()
    return ((lens[:, None] * lens[None, :] * keep).sum((-1, -2)) / layout.tokens**2).mean().item()
