"""Content-independent masks, filled to a block budget: local 3D window, radial decay, random.

Distances are between video blocks' centroids in region units (one frame, one region height, one
region width each count 1): a full region sits at its centre, an edge block (partial regions' tokens
packed together, docs/CONTRACT.md) at the mean position of the tokens it holds.
"""
import torch

from ..layout import BLOCK_SIZE
from .blocks import forced_blocks, keep_top, video_block_ids


def region_coordinates(layout, device="cpu"):
    """(num_regions, 3) float: the centroid (frame, y / region_h, x / region_w) of each video block's
    valid tokens, in block order."""
    first = layout.text_blocks if layout.text_first else 0
    rows = layout.region_index(device).view(layout.num_blocks, BLOCK_SIZE).narrow(0, first, layout.num_regions)
    valid = rows >= 0
    token = rows - (layout.text_len if layout.text_first else 0)
    f = token // (layout.height * layout.width)
    y = token // layout.width % layout.height
    x = token % layout.width
    # float64 sums keep the full regions' centroids exact, so equal distances still tie.
    coords = torch.stack([f, y, x], -1).double() * valid.unsqueeze(-1)
    centroid = coords.sum(1) / valid.sum(1, keepdim=True)
    unit = torch.tensor([1.0, layout.region_h, layout.region_w], dtype=torch.float64, device=device)
    return (centroid / unit).float()


def exact_distances(a, b):
    """Euclidean distances without cdist's matrix-product shortcut, whose rounding would break ties."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def video_scores(layout, region_scores):
    """(nb, nb) scores with region_scores (S, S) on the video blocks and -inf on text (text is forced)."""
    device = region_scores.device
    scores = torch.full((layout.num_blocks, layout.num_blocks), float("-inf"), device=device)
    video = video_block_ids(layout, device)
    scores[video[:, None], video[None, :]] = region_scores
    return scores


def local_window_scores(layout, device="cpu"):
    """Nearer regions in (frame, row, column) first: a 3D window that grows with the budget."""
    coords = region_coordinates(layout, device)
    return video_scores(layout, -exact_distances(coords, coords))


def radial_scores(layout, device="cpu"):
    """Spatial distance weighted by 2^floor(log2(1 + frame distance)), after Radial Attention:
    the spatial window halves with every doubling of the frame distance."""
    coords = region_coordinates(layout, device)
    frame_gap = (coords[:, None, 0] - coords[None, :, 0]).abs()
    spatial = exact_distances(coords[:, 1:], coords[:, 1:])
    return video_scores(layout, -(1 + spatial) * torch.exp2(torch.floor(torch.log2(1 + frame_gap))))


def static_keep(layout, scores, heads, budget):
    """The same mask for every head: forced blocks, then the best `scores` up to `budget`."""
    return keep_top(scores.expand(1, heads, -1, -1), forced_blocks(layout, scores.device), budget)


def random_keep(layout, heads, budget, generator, device="cpu"):
    """Random blocks per head, drawn with a CPU `generator` so a seed gives the same mask on every device."""
    scores = torch.rand(1, heads, layout.num_blocks, layout.num_blocks, generator=generator).to(device)
    return keep_top(scores, forced_blocks(layout, device), budget)
