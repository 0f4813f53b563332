"""The padded region-major layout of a video latent (docs/CONTRACT.md)."""
import math

import torch

BLOCK_SIZE = 128


class VideoLayout:
    """A video of `frames x height x width` latent tokens plus `text_len` text tokens.

    Each frame is tiled into regions of `region = (rows, cols)` tokens (rows * cols = 128);
    edge regions may be partial. In region-major order every region is one 128-row block:
    its valid tokens first (row-major inside the region), then zero padding. Text tokens form
    ceil(text_len / 128) blocks before (`text_first`) or after the video blocks.
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
        self.regions_y = math.ceil(self.height / self.region_h)
        self.regions_x = math.ceil(self.width / self.region_w)
        self.num_regions = self.frames * self.regions_y * self.regions_x
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
        region_x = x // self.region_w
        cols_in_region = torch.clamp(self.width - region_x * self.region_w, max=self.region_w)
        region = (f * self.regions_y + y // self.region_h) * self.regions_x + region_x
        position = (y % self.region_h) * cols_in_region + x % self.region_w
        video_block0 = self.text_blocks if self.text_first else 0
        text_block0 = 0 if self.text_first else self.num_regions
        video_token0 = self.text_len if self.text_first else 0
        text_token0 = 0 if self.text_first else self.video_tokens

        index = torch.full((self.padded_tokens,), -1, dtype=torch.long)
        video_rows = ((video_block0 + region) * BLOCK_SIZE + position).flatten()
        index[video_rows] = video_token0 + torch.arange(self.video_tokens)
        text = torch.arange(self.text_len)
        index[text_block0 * BLOCK_SIZE + text] = text_token0 + text
        return index
