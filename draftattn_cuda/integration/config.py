"""DraftConfig: the user's knobs, validated when the config is built."""
from dataclasses import dataclass

RULES = ("global", "topk", "topp")
PRECISIONS = ("native", "fp8")


@dataclass(frozen=True)
class DraftConfig:
    """How draft attention runs inside a transformer.

    sparsity, rule, top_p: passed to draft_attention. dense_steps_fraction: the first fraction
    of denoising steps runs the stock dense attention (the paper: 25%). dense_layers: indices
    of self-attention layers that always stay dense, counted in the model's block order; None
    takes the model family's default (Wan and CogVideoX: block 0; HunyuanVideo: double-stream
    blocks 0-1). region: (rows, cols) of a draft region, rows * cols = 128. precision:
    "native" (the model's fp16/bf16) or "fp8" (e4m3 attention). permute_once: keep the whole
    transformer in padded region-major token order from the patch embedding to the output
    projection (rotary tables permuted to match), so no self-attention layer permutes; every
    self-attention layer then runs through draft attention's kernel, the dense ones with all
    blocks kept.
    """

    sparsity: float = 0.9
    rule: str = "global"
    top_p: float = 0.9
    dense_steps_fraction: float = 0.25
    dense_layers: tuple | None = None
    region: tuple = (8, 16)
    precision: str = "native"
    permute_once: bool = False

    def __post_init__(self):
        _require(_is_number(self.sparsity) and 0 <= self.sparsity <= 1, "sparsity", "a number in [0, 1]",
                  self.sparsity)
        _require(self.rule in RULES, "rule", f"one of {RULES}", self.rule)
        _require(_is_number(self.top_p) and 0 < self.top_p <= 1, "top_p", "a number in (0, 1]", self.top_p)
        _require(_is_number(self.dense_steps_fraction) and 0 <= self.dense_steps_fraction <= 1,
                 "dense_steps_fraction", "a number in [0, 1]", self.dense_steps_fraction)
        if self.dense_layers is not None:
            layers = _as_tuple(self.dense_layers)
            _require(layers is not None and all(_is_index(i) for i in layers), "dense_layers",
                     "None or a sequence of layer indices >= 0", self.dense_layers)
            object.__setattr__(self, "dense_layers", tuple(sorted(set(layers))))
        region = _as_tuple(self.region)
        _require(region is not None and len(region) == 2 and all(_is_index(n) and n > 0 for n in region)
                 and region[0] * region[1] == 128, "region", "(rows, cols) with rows * cols = 128, e.g. (8, 16)",
                 self.region)
        object.__setattr__(self, "region", region)
        _require(self.precision in PRECISIONS, "precision", f"one of {PRECISIONS}", self.precision)
        _require(isinstance(self.permute_once, bool), "permute_once", "True or False", self.permute_once)


def _require(ok, field, wanted, got):
    if not ok:
        raise ValueError(f"DraftConfig.{field} must be {wanted}, got {got!r}")


def _is_number(x):
    # bool is an int subclass; True as a sparsity is a mistake, not 1.0.
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_index(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _as_tuple(x):
    try:
        return tuple(x)
    except TypeError:
        return None
