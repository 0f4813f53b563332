"""Per-call statistics of the most recent denoising step, kept as device tensors (no host sync)."""
import torch


class DraftStats:
    """Kept density of every sparse self-attention call of the latest step that ran sparse.

    `calls` is a list of (layer, density), density a (batch, heads) float64 tensor on the
    model's device: the fraction of valid token pairs the block lists computed. Records of an
    older step are dropped when the first call of a newer step arrives, so memory stays bounded.
    """

    def __init__(self):
        self.step = None
        self.calls = []

    def record(self, step, layer, density):
        if step != self.step:
            self.step, self.calls = step, []
        self.calls.append((layer, density))

    def mean_density(self):
        """The mean kept density over the recorded calls, batch elements and heads; None if none."""
        if not self.calls:
            return None
        return torch.stack([density.mean() for _, density in self.calls]).mean()

    def clear(self):
        self.step, self.calls = None, []
