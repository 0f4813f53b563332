"""Ulysses context parallelism for draft attention, driven by diffusers' own parallel config.

Under `model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=P))` every rank holds a
contiguous chunk of the video tokens (diffusers cuts the sequence in model order: `chunk`, or
`tensor_split` with ulysses_anything). Draft attention needs the whole latent grid, so the exchange
gathers the sequence and scatters the heads, (batch, tokens / P, heads, d) -> (batch, tokens,
heads / P, d), in model order; each rank drafts and attends its own heads over the full sequence,
and the inverse exchange returns its chunk with all heads.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class UlyssesGroup:
    """The Ulysses process group of this rank: its torch.distributed group, size and rank in it."""

    group: object
    size: int
    rank: int


def ulysses_group_of(parallel_config):
    """The UlyssesGroup of a diffusers ParallelConfig, or None without context parallelism.

    Ring attention is refused: its ranks never hold the whole sequence, which drafting needs."""
    context = getattr(parallel_config, "context_parallel_config", None)
    if context is None:
        return None
    if context.ring_degree > 1:
        raise ValueError(f"draft attention supports diffusers' context parallelism with ulysses_degree > 1 only; "
                         f"ContextParallelConfig.ring_degree must be 1, got {context.ring_degree} (ring attention never "
                         "gathers the whole sequence, which drafting needs)")
    if context.ulysses_degree == 1:
        return None
    return UlyssesGroup(context._ulysses_mesh.get_group(), context.ulysses_degree, context._ulysses_local_rank)


def sequence_split(tokens, size):
    """The tokens of every rank's chunk when diffusers splits `tokens` over `size` ranks (tensor_split's
    rule, which equals chunk's whenever the split is even, the only case plain Ulysses accepts)."""
    return [tokens // size + (1 if rank < tokens % size else 0) for rank in range(size)]


def check_shard(ulysses, local_tokens, total_tokens, heads):
    """The split sizes of the sequence, after checking that this rank holds its chunk of `total_tokens`."""
    if heads % ulysses.size:
        raise ValueError(f"draft attention under context parallelism needs the heads split evenly: the layer has "
                         f"{heads} heads, not divisible by ContextParallelConfig.ulysses_degree={ulysses.size}")
    sizes = sequence_split(total_tokens, ulysses.size)
    if local_tokens != sizes[ulysses.rank]:
        raise RuntimeError(f"context parallel rank {ulysses.rank} holds {local_tokens} tokens, but the latent grid's "
                           f"{total_tokens} tokens split over {ulysses.size} ranks give it {sizes[ulysses.rank]}; the "
                           "sequence must be split along the tokens in model order, as diffusers' plan does")
    return sizes


def gather_sequence(x, ulysses, sizes):
    """(batch, sizes[rank], heads, d) on every rank -> (batch, sum(sizes), heads / P, d): the whole
    sequence in rank (= model) order, this rank's group of heads."""
    batch, local, heads, dim = x.shape
    per_rank = x.reshape(batch, local, ulysses.size, heads // ulysses.size, dim).permute(2, 1, 0, 3, 4)
    sent = per_rank.reshape(ulysses.size * local, batch, heads // ulysses.size, dim)
    received = _all_to_all(sent, output_split_sizes=sizes, input_split_sizes=[local] * ulysses.size, ulysses=ulysses)
    return received.permute(1, 0, 2, 3)


def scatter_sequence(x, ulysses, sizes):
    """The inverse of gather_sequence: (batch, sum(sizes), heads / P, d) -> (batch, sizes[rank], heads, d)."""
    batch, _, local_heads, dim = x.shape
    local = sizes[ulysses.rank]
    sent = x.permute(1, 0, 2, 3)
    received = _all_to_all(sent, output_split_sizes=[local] * ulysses.size, input_split_sizes=sizes, ulysses=ulysses)
    per_rank = received.reshape(ulysses.size, local, batch, local_heads, dim).permute(2, 1, 0, 3, 4)
    return per_rank.reshape(batch, local, ulysses.size * local_heads, dim)


def _all_to_all(x, output_split_sizes, input_split_sizes, ulysses):
    # Splits along dim 0; the functional collective keeps the exchange traceable by torch.compile.
    # Imported here: torch builds without distributed support can still import the integration.
    import torch.distributed._functional_collectives as funcol

    out = funcol.all_to_all_single(x.contiguous(), output_split_sizes, input_split_sizes, ulysses.group)
    return funcol.wait_tensor(out)

