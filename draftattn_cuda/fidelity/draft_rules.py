"""The draft_select rules (global, topk, topp) tuned per head to a block budget.

draft_select takes one sparsity (or top_p) for all heads; calling it head by head and
searching that knob lets every method keep the same number of blocks.
"""
import torch

from .blocks import lists_to_keep


def kept(q_pooled, k_pooled, layout, rule, sparsity=0.0, top_p=0.9):
    kv_indices, kv_counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, rule, sparsity, top_p,
                                                            layout.text_blocks, layout.text_first)
    return lists_to_keep(kv_indices, kv_counts)


def smallest_reaching(count_of, low, high, budget):
    """Smallest integer n in [low, high] with count_of(n) >= budget (high if none), by bisection."""
    while low < high:
        middle = (low + high) // 2
        if count_of(middle) >= budget:
            high = middle
        else:
            low = middle + 1
    return low


def global_rule(q_pooled, k_pooled, layout, budget):
    """The paper's rule keeping its top n region pairs, n the smallest that fills `budget`.

    Each further region pair adds at most one block (a diagonal one adds none), so the budget is met exactly.
    """
    pairs = layout.num_regions**2

    def keep_with(n):  # sparsity whose dropped count floor(sparsity * pairs) is exactly pairs - n
        return kept(q_pooled, k_pooled, layout, "global", sparsity=(pairs - n + 0.5) / pairs)

    return keep_with(smallest_reaching(lambda n: int(keep_with(n).sum()), 1, pairs, budget))


def topk_rule(q_pooled, k_pooled, layout, budget):
    """Per-row top-k with the k whose total is nearest `budget` (steps of about one block per row)."""
    regions = layout.num_regions

    def keep_with(per_row):
        return kept(q_pooled, k_pooled, layout, "topk", sparsity=(regions - per_row + 0.5) / regions)

    above = smallest_reaching(lambda n: int(keep_with(n).sum()), 1, regions, budget)
    candidates = [keep_with(n) for n in {max(above - 1, 1), above}]
    return min(candidates, key=lambda keep: abs(int(keep.sum()) - budget))


def topp_rule(q_pooled, k_pooled, layout, budget, steps=40):
    """Per-row cumulative mass p, bisected to the total nearest `budget`.

    Blocks whose draft mass rounds to nothing stay out even at p = 1, so a dense budget can be missed.
    """
    low, high = 0.0, 1.0
    best = kept(q_pooled, k_pooled, layout, "topp", top_p=high)
    for _ in range(steps):
        middle = (low + high) / 2
        keep = kept(q_pooled, k_pooled, layout, "topp", top_p=middle)
        if abs(int(keep.sum()) - budget) < abs(int(best.sum()) - budget):
            best = keep
        if keep.sum() >= budget:
            high = middle
        else:
            low = middle
    return best


DRAFT_RULES = {"global": global_rule, "topk": topk_rule, "topp": topp_rule}


def draft_keep(rule, q_pooled, k_pooled, layout, budget):
    """(1, heads, nb, nb) keep mask of one draft rule, each head filled to `budget` blocks."""
    heads = q_pooled.shape[1]
    select = DRAFT_RULES[rule]
    return torch.cat([select(q_pooled[:, h:h + 1].contiguous(), k_pooled[:, h:h + 1].contiguous(), layout, budget)
                      for h in range(heads)], 1)
