"""draft_select keeps exactly the documented blocks (docs/CONTRACT.md), ties included."""
import itertools
import math

import pytest
import torch

import draftattn_cuda as da


def draft_map(q_pooled, k_pooled):
    return torch.softmax(q_pooled @ k_pooled.transpose(-1, -2) / math.sqrt(q_pooled.shape[-1]), -1)


def ranked(values):
    """Positions ordered by value descending, lower position first on ties."""
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def expected_region_mask(probs, rule, sparsity, top_p):
    regions = probs.shape[-1]
    keep = torch.zeros(probs.shape, dtype=torch.bool)
    for b in range(probs.shape[0]):
        for h in range(probs.shape[1]):
            a = probs[b, h]
            if rule == "global":
                flat = a.flatten().tolist()
                for pos in ranked(flat)[: regions * regions - math.floor(sparsity * (regions * regions))]:
                    keep[b, h, pos // regions, pos % regions] = True
            for i in range(regions if rule != "global" else 0):
                row = a[i].tolist()
                order = ranked(row)
                if rule == "topk":
                    chosen = order[: max(1, regions - math.floor(sparsity * regions))]
                else:
                    chosen, mass = [], 0.0
                    for j in order:
                        chosen.append(j)
                        mass += row[j]
                        if mass >= top_p:
                            break
                keep[b, h, i, chosen] = True
    keep[..., torch.arange(regions), torch.arange(regions)] = True
    return keep


def lists_to_mask(kv_indices, kv_counts):
    nb = kv_indices.shape[-1]
    mask = torch.zeros(kv_indices.shape, dtype=torch.bool)
    for index in itertools.product(*map(range, kv_counts.shape)):
        row = kv_indices[index].tolist()
        count = int(kv_counts[index])
        assert row[:count] == sorted(set(row[:count])) and all(0 <= j < nb for j in row[:count])
        assert row[count:] == [-1] * (nb - count)
        mask[index][row[:count]] = True
    return mask


def with_text(region_mask, text_blocks, text_first):
    b, h, s, _ = region_mask.shape
    nb = s + text_blocks
    video = slice(text_blocks, nb) if text_first else slice(0, s)
    text = slice(0, text_blocks) if text_first else slice(s, nb)
    mask = torch.zeros(b, h, nb, nb, dtype=torch.bool)
    mask[:, :, video, video] = region_mask
    mask[:, :, text, :] = True
    mask[:, :, :, text] = True
    return mask


def random_pooled(regions, rng, batch=2, heads=3, dim=64):
    return [torch.randn(batch, heads, regions, dim, generator=rng) for _ in range(2)]


@pytest.mark.parametrize("rule,sparsity,top_p", [("global", 0.9, 0.9), ("global", 0.55, 0.9), ("topk", 0.75, 0.9),
                                                 ("topk", 0.99, 0.9), ("topp", 0.5, 0.6), ("topp", 0.0, 0.95)])
@pytest.mark.parametrize("text_blocks,text_first", [(0, False), (2, False), (1, True)])
def test_rule_keeps_documented_blocks(rule, sparsity, top_p, text_blocks, text_first, rng):
    q_pooled, k_pooled = random_pooled(23, rng)
    q_pooled *= 4  # a peaked draft map, so the rules differ
    kv_indices, kv_counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, rule, sparsity, top_p,
                                                              text_blocks, text_first)
    assert kv_indices.dtype == kv_counts.dtype == torch.int32
    assert kv_indices.shape == (2, 3, 23 + text_blocks, 23 + text_blocks)
    region_mask = expected_region_mask(draft_map(q_pooled, k_pooled), rule, sparsity, top_p)
    assert torch.equal(lists_to_mask(kv_indices, kv_counts), with_text(region_mask, text_blocks, text_first))
    assert torch.equal(kv_counts, lists_to_mask(kv_indices, kv_counts).sum(-1).int())


@pytest.mark.parametrize("rule", ["global", "topk", "topp"])
def test_ties_break_toward_lower_index(rule, rng):
    regions = 10
    q_pooled, k_pooled = random_pooled(regions, rng, batch=1, heads=2)
    q_pooled[:, 0] = 0  # head 0: a few rows see a uniform draft map: every entry of the row ties
    q_pooled[:, 1, 3:7] = 0
    k_pooled[:, 1, 5] = k_pooled[:, 1, 2]  # head 1: columns 2 and 5 tie in every row
    kv_indices, kv_counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, rule, 0.63, 0.35, 0, False)
    probs = draft_map(q_pooled, k_pooled)
    assert torch.equal(probs[0, 1, :, 2], probs[0, 1, :, 5])
    assert torch.equal(lists_to_mask(kv_indices, kv_counts), expected_region_mask(probs, rule, 0.63, 0.35))


def test_global_rule_on_uniform_map_keeps_leading_flat_entries(rng):
    regions = 8
    q_pooled = torch.zeros(1, 1, regions, 32)
    k_pooled = torch.randn(1, 1, regions, 32, generator=rng)
    kv_indices, kv_counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, "global", 0.75, 0.9, 0, False)
    # 64 - 48 = 16 kept: rows 0 and 1 entirely, then only the diagonal.
    assert kv_counts[0, 0].tolist() == [8, 8, 1, 1, 1, 1, 1, 1]
    assert kv_indices[0, 0, 5, :2].tolist() == [5, -1]


def test_sparsity_extremes(rng):
    q_pooled, k_pooled = random_pooled(12, rng, batch=1, heads=1)
    _, dense_counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, "global", 0.0, 0.9, 1, False)
    assert torch.all(dense_counts == 13)
    _, counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, "global", 1.0, 0.9, 1, True)
    assert counts[0, 0].tolist() == [13] + [2] * 12  # text row, then diagonal + text block
    _, counts = torch.ops.draftattn.draft_select(q_pooled, k_pooled, "topk", 1.0, 0.9, 1, True)
    assert counts[0, 0, 0] == 13 and torch.all((counts[0, 0, 1:] >= 2) & (counts[0, 0, 1:] <= 3))
