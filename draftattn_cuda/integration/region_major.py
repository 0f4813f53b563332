"""Permute once per forward: helpers for the hooks that move a transformer's video tokens into
padded region-major order after the patch embedding and back before the output projection.

Every op between those two points is per token except self-attention (draft attention reads the
region-major order directly) and rotary embedding (its tables get permuted the same way), so the
transformer's result is unchanged. Padding rows are carried through the blocks like tokens and
dropped at the end; attention never reads them as keys.
"""
import torch


def to_region_rows(x, layout, dim):
    """Model-order video tokens along `dim` -> layout.num_regions * 128 region-major rows, padding rows zero."""
    index = layout.region_index(x.device)
    zero_row = torch.zeros_like(x.narrow(dim, 0, 1))
    source = torch.where(index < 0, x.shape[dim], index)
    return torch.cat([x, zero_row], dim=dim).index_select(dim, source)


def from_region_rows(x, layout, dim):
    """The inverse of to_region_rows: the video tokens back in model order, padding rows dropped."""
    return x.index_select(dim, layout.model_index(x.device))


def zero_padding_rows(x, layout, start):
    """x (batch, rows, heads, head_dim) with the padding rows of its video blocks, which begin at
    row `start`, set to zero (draft pooling needs them zero; rotary tables do it for free)."""
    video_rows = layout.num_regions * 128
    valid = (layout.region_index(x.device) >= 0).view(1, video_rows, 1, 1)
    video = torch.where(valid, x.narrow(1, start, video_rows), 0)
    return torch.cat([x.narrow(1, 0, start), video, x.narrow(1, start + video_rows, x.shape[1] - start - video_rows)],
                     dim=1)
