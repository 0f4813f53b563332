"""Block masks as bool (batch, heads, nb, nb) "keep" tensors, and the sparse_attn list format."""
import torch


def forced_blocks(layout, device="cpu"):
    """(nb, nb) bool: what draft_select always keeps, the diagonal and every text row and column."""
    forced = torch.eye(layout.num_blocks, dtype=torch.bool, device=device)
    text = text_block_ids(layout, device)
    forced[text, :] = True
    forced[:, text] = True
    return forced


def text_block_ids(layout, device="cpu"):
    first = 0 if layout.text_first else layout.num_regions
    return torch.arange(first, first + layout.text_blocks, device=device)


def video_block_ids(layout, device="cpu"):
    first = layout.text_blocks if layout.text_first else 0
    return torch.arange(first, first + layout.num_regions, device=device)


def block_budget(layout, density):
    """Kept blocks per head for a target density, never below what is forced."""
    return max(round(density * layout.num_blocks**2), int(forced_blocks(layout).sum()))


def keep_top(scores, forced, budget):
    """Per (batch, head): the forced blocks, then the highest scores (ties: lower flat index) up to `budget`."""
    flat = scores.flatten(-2).masked_fill(forced.flatten(), float("inf"))
    order = torch.sort(flat, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep.scatter_(-1, order[..., :budget], True)
    return keep.view(scores.shape)


def keep_to_lists(keep):
    """(kv_indices, kv_counts) int32 in the sparse_attn format: ascending, -1 past each count."""
    nb = keep.shape[-1]
    columns = torch.where(keep, torch.arange(nb, device=keep.device), nb).sort(-1).values
    return torch.where(columns == nb, -1, columns).to(torch.int32), keep.sum(-1).to(torch.int32)


def lists_to_keep(kv_indices, kv_counts):
    """(..., nb, nb) bool from (kv_indices, kv_counts), the inverse of keep_to_lists; entries past a count
    are ignored, so any max_blocks works."""
    nb = kv_counts.shape[-1]
    listed = torch.arange(kv_indices.shape[-1], device=kv_indices.device) < kv_counts.unsqueeze(-1)
    keep = torch.zeros(*kv_counts.shape, nb + 1, dtype=torch.bool, device=kv_indices.device)
    keep.scatter_(-1, torch.where(listed, kv_indices.long(), nb), True)
    return keep[..., :nb]
