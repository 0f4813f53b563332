"""Attention shapes: the model shapes of docs/ALGORITHM.md, custom video grids, flat sequences.

A video shape carries a VideoLayout: its blocks are the full 8x16 regions of each frame, the
edge blocks that pack the partial regions' tokens, and the text blocks, in the padded
region-major order of docs/CONTRACT.md. A flat
shape is a plain (batch, heads, tokens, head_dim) sequence cut into 128-token blocks.
"""
import math
from dataclasses import dataclass

import torch

from ..layout import BLOCK_SIZE, VideoLayout

# name: (frames, height, width, heads, head_dim, text_len, text_first), latent grid after patchify.
MODEL_SHAPES = {
    "wan1.3b-480p": (21, 30, 52, 12, 128, 0, False),
    "wan14b-720p": (21, 45, 80, 40, 128, 0, False),
    "wan14b-768p": (21, 48, 80, 40, 128, 0, False),
    "hunyuan-720p": (33, 45, 80, 24, 128, 256, False),
    "hunyuan-768p": (33, 48, 80, 24, 128, 256, False),
    "cogvideox5b-480p": (13, 30, 45, 48, 64, 226, True),
}
VIDEO_SHAPE_FORMS = (f"one of {sorted(MODEL_SHAPES)} or frames,height,width,heads,head_dim[,text_len] "
                     "(latent grid after patchify)")
SHAPE_FORMS = VIDEO_SHAPE_FORMS + " or batch,heads,tokens,head_dim (flat sequence)"


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    heads: int
    head_dim: int
    layout: VideoLayout = None  # None: a flat sequence of `flat_tokens`
    flat_tokens: int = 0

    @property
    def tokens(self):
        """Real tokens of the sequence (video + text), the N of the dense-equivalent FLOPs."""
        return self.layout.tokens if self.layout else self.flat_tokens

    @property
    def num_blocks(self):
        return self.layout.num_blocks if self.layout else math.ceil(self.flat_tokens / BLOCK_SIZE)

    @property
    def padded_tokens(self):
        """Rows the kernel runs over: num_blocks * 128 for a video, the tokens themselves when flat."""
        return self.layout.padded_tokens if self.layout else self.flat_tokens

    def block_lens(self, device="cpu"):
        """int32 (num_blocks,) valid tokens per block; a flat sequence's last block may be partial."""
        if self.layout:
            return self.layout.block_lens(device)
        lens = torch.full((self.num_blocks,), BLOCK_SIZE, dtype=torch.int32, device=device)
        lens[-1] = self.flat_tokens - BLOCK_SIZE * (self.num_blocks - 1)
        return lens

    def describe(self):
        sizes = f"batch {self.batch}, heads {self.heads}, head_dim {self.head_dim}"
        if not self.layout:
            return f"{self.name}: flat sequence of {self.tokens} tokens ({self.num_blocks} blocks), {sizes}"
        layout = self.layout
        text = (f" + {layout.text_len} text tokens {'before' if layout.text_first else 'after'} the video"
                if layout.text_len else "")
        return (f"{self.name}: latent {layout.frames}x{layout.height}x{layout.width}{text} = {layout.tokens} "
                f"tokens -> {layout.num_blocks} blocks ({layout.full_regions} full 8x16 regions, "
                f"{layout.edge_blocks} edge blocks, "
                f"{layout.padded_tokens} padded rows), {sizes}")


def model_shape(name, batch=1):
    frames, height, width, heads, head_dim, text_len, text_first = MODEL_SHAPES[name]
    return Shape(name, batch, heads, head_dim,
                 VideoLayout(frames, height, width, text_len=text_len, text_first=text_first))


def parse_shape(text, batch=1, text_first=False):
    """A Shape from a model name, `frames,height,width,heads,head_dim[,text_len]` or `batch,heads,tokens,head_dim`.

    `batch` and `text_first` apply to video shapes (a flat shape names its own batch).
    Raises ValueError naming the accepted forms.
    """
    if text in MODEL_SHAPES:
        return model_shape(text, batch)
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (4, 5, 6) or min(numbers[:5]) < 1 or min(numbers) < 0:
        raise ValueError(f"--shape must be {SHAPE_FORMS}; got {text!r}")
    if len(numbers) == 4:
        flat_batch, heads, tokens, head_dim = numbers
        return Shape(text, flat_batch, heads, head_dim, flat_tokens=tokens)
    frames, height, width, heads, head_dim = numbers[:5]
    text_len = numbers[5] if len(numbers) == 6 else 0
    return Shape(text, batch, heads, head_dim,
                 VideoLayout(frames, height, width, text_len=text_len, text_first=text_first))
