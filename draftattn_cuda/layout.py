"""The padded region-major layout of a video latent (docs/CONTRACT.md)."""
import math

import torch

BLOCK_SIZE = 128


class VideoLayout:
    """A video of `frames x height x width` latent tokens plus `text_len` text tokens.

    Each frame is tiled into regions of `region = (rows, cols)` tokens (rows * cols = 128): a
    frame has `full_rows x full_cols` full regions, and partial regions at the right and bottom
    edges where height or width does not divide. In region-major order every full region is one
    128-row block (tokens row-major inside it), `full_regions` of them in region order (frame,
    region row, region column). The partial regions' tokens follow as one stream (frame after
    frame, region order within a frame, row-major inside each region), `edge_tokens` long, cut
    into `edge_blocks` blocks of 128 rows; only the last is partial, its padding rows zero.
    The `num_regions` video blocks (the draft map's size) are the full regions and edge blocks.
    Text tokens form ceil(text_len / 128) blocks before (`text_first`) or after the video blocks.
    """

    def __init__(self, frames, height, width, region=(8, 16), text_len=0, text_first=False):
        for name, value in (("frames", frames), ("height", height), ("width", width)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if len(region) != 2 or region[0] < 1 or region[1] < 1 or region[0] * region[1] != BLOCK_SIZE:
            raise ValueError(f"region must be (rows, cols) with rows * cols = 128, e.g. (8, 16); got {region!r}")
        if int(text_len) != text_len or text_len < 0:
            raise ValueError(f"text_len must be an integer >= 0, got {text_len!r}")
        self.frames, self.height, self.width = int(frames), int(height), int(width)
        self.region_h, self.region_w = int(region[0]), int(region[1])
        self.text_len, self.text_first = int(text_len), bool(text_first)
        self.full_rows = self.height // self.region_h
        self.full_cols = self.width // self.region_w
        self.full_regions = self.frames * self.full_rows * self.full_cols
        self.edge_tokens = self.frames * (self.height * self.width - self.full_rows * self.full_cols * BLOCK_SIZE)
        self.edge_blocks = math.ceil(self.edge_tokens / BLOCK_SIZE)
        self.num_regions = self.full_regions + self.edge_blocks
        self.text_blocks = math.ceil(self.text_len / BLOCK_SIZE)
        self.num_blocks = self.num_regions + self.text_blocks
        self.video_tokens = self.frames * self.height * self.width
        self.tokens = self.video_tokens + self.text_len
        self.padded_tokens = self.num_blocks * BLOCK_SIZE
        self._cache = {}

    def __repr__(self):
        return (f"VideoLayout(frames={self.frames}, height={self.height}, width={self.width}, "
                f"region=({self.region_h}, {self.region_w}), text_len={self.text_len}, "
                f"text_first={self.text_first})")

    @property
    def op_args(self):
        """The layout arguments of the draftattn ops, in schema order."""
        return (self.frames, self.height, self.width, self.region_h, self.region_w, self.text_len,
                self.text_first)

    def region_index(self, device="cpu"):
        """int64 (padded_tokens,): the model-order token of each region-major row, -1 for padding."""
        return self._cached("region_index", device, self._build_region_index)

    def model_index(self, device="cpu"):
        """int64 (tokens,): the region-major row of each model-order token (the inverse)."""
        def build():
            rows = self._build_region_index()
            real = rows >= 0
            inverse = torch.empty(self.tokens, dtype=torch.long)
            inverse[rows[real]] = torch.arange(self.padded_tokens)[real]
            return inverse
        return self._cached("model_index", device, build)

    def block_lens(self, device="cpu"):
        """int32 (num_blocks,): valid tokens of each block (the `block_lens` of sparse_attn)."""
        def build():
            return (self._build_region_index() >= 0).view(self.num_blocks, BLOCK_SIZE).sum(1).to(torch.int32)
        return self._cached("block_lens", device, build)

    def to_regions(self, x):
        """(batch, tokens, heads, head_dim) model order -> (batch, padded_tokens, heads, head_dim)."""
        return torch.ops.draftattn.to_regions(x, *self.op_args)

    def from_regions(self, x):
        """The inverse of to_regions: padding rows are dropped."""
        return torch.ops.draftattn.from_regions(x, *self.op_args)

    def _cached(self, name, device, build):
        key = (name, torch.device(device))
        if key not in self._cache:
            self._cache[key] = build().to(key[1])
        return self._cache[key]

    def _build_region_index(self):
        f, y, x = torch.meshgrid(torch.arange(self.frames), torch.arange(self.height), torch.arange(self.width),
                                 indexing="ij")
        full_h, full_w = self.full_rows * self.region_h, self.full_cols * self.region_w
        full_region = (f * self.full_rows + y // self.region_h) * self.full_cols + x // self.region_w
        full_row = full_region * BLOCK_SIZE + (y % self.region_h) * self.region_w + x % self.region_w
        # Edge blocks hold the edge stream back to back, so a stream position is a row offset.
        edge_per_frame = self.edge_tokens // self.frames
        edge_row = self.full_regions * BLOCK_SIZE + f * edge_per_frame + self._edge_offset_in_frame(y, x)
        row = torch.where((y < full_h) & (x < full_w), full_row, edge_row)
        video_block0 = self.text_blocks if self.text_first else 0
        text_block0 = 0 if self.text_first else self.num_regions
        video_token0 = self.text_len if self.text_first else 0
        text_token0 = 0 if self.text_first else self.video_tokens

        index = torch.full((self.padded_tokens,), -1, dtype=torch.long)
        index[(video_block0 * BLOCK_SIZE + row).flatten()] = video_token0 + torch.arange(self.video_tokens)
        text = torch.arange(self.text_len)
        index[text_block0 * BLOCK_SIZE + text] = text_token0 + text
        return index

    def _edge_offset_in_frame(self, y, x):
        """Position of edge token (y, x) in its frame's part of the edge stream (meaningless for full tokens)."""
        full_h, full_w = self.full_rows * self.region_h, self.full_cols * self.region_w
        edge_w, edge_h = self.width - full_w, self.height - full_h
        # Right-edge pieces of region rows 0..full_rows-1, each region_h x edge_w, one after another.
        right = y * edge_w + (x - full_w)
        # Then the bottom region row: every region left of this one is region_w wide, the corner edge_w.
        col0 = (x // self.region_w) * self.region_w
        piece_w = torch.clamp(self.width - col0, max=self.region_w)
        bottom = full_h * edge_w + edge_h * col0 + (y - full_h) * piece_w + (x - col0)
        return torch.where(y < full_h, right, bottom)
