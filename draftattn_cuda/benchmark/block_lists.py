"""kv block lists for a benchmark case: uniform random rows, or drafted by the paper's global rule."""
import torch

from ..pipeline import kept_token_pair_fraction

LIST_KINDS = ("uniform", "draft")


def uniform_block_lists(batch, heads, num_blocks, count, device, generator):
    """Every row lists `count` distinct random kv blocks, ascending (int32 lists of sparse_attn)."""
    scores = torch.rand(batch, heads, num_blocks, num_blocks, device=device, generator=generator)
    chosen = scores.argsort(-1)[..., :count].sort(-1).values.to(torch.int32)
    return chosen, torch.full((batch, heads, num_blocks), count, dtype=torch.int32, device=device)


def drafted_block_lists(shape, inputs, sparsity):
    """draft_select's global rule (one threshold per head over the pooled draft map, diagonal and
    text always kept) at `sparsity`, on the case's pooled q and k."""
    layout = shape.layout
    return torch.ops.draftattn.draft_select(inputs.q_pooled, inputs.k_pooled, "global", sparsity, 0.9,
                                            layout.text_blocks, layout.text_first)


def block_lists(kind, shape, inputs, density, generator):
    """(kv_indices, kv_counts) of one case; `density` is the target fraction of kept blocks."""
    if kind == "uniform":
        count = max(1, min(shape.num_blocks, round(density * shape.num_blocks)))
        return uniform_block_lists(shape.batch, shape.heads, shape.num_blocks, count, inputs.q.device, generator)
    if kind == "draft":
        return drafted_block_lists(shape, inputs, 1.0 - density)
    raise ValueError(f"block list kind must be one of {LIST_KINDS}, got {kind!r}")


def list_statistics(shape, kv_indices, kv_counts):
    """Kept fraction of real token pairs and of block pairs, and the blocks the kernel computes (syncs)."""
    block_lens = shape.block_lens(kv_counts.device)
    pairs = kept_token_pair_fraction(kv_indices, kv_counts, block_lens).mean().item()
    listed = int(kv_counts.long().sum())
    return {"density": pairs, "block_density": listed / (kv_counts.numel() * shape.num_blocks),
            "computed_blocks": listed}
