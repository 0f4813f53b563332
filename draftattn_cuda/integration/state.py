"""DraftState: what an enabled transformer carries between calls (config, grid, step, stats)."""
from ..layout import VideoLayout
from ..pipeline import region_major_tokens
from .stats import DraftStats

STATE_ATTRIBUTE = "_draftattn_state"


class DraftState:
    """Shared by the hooks and all draft processors of one transformer.

    `grid` is the latent (frames, height, width) after patchify of the current forward, set by
    the transformer's forward pre-hook. `step` / `num_steps` come from set_step; before any
    call the model is at step 0 of an unknown count, which is dense whenever
    dense_steps_fraction > 0, whatever the count. `region_major`: the blocks see the video
    tokens in padded region-major order (DraftConfig.permute_once).
    """

    def __init__(self, config, family, dense_layers):
        self.config = config
        self.family = family
        self.dense_layers = dense_layers
        self.region_major = config.permute_once
        self.grid = None
        self.step = 0
        self.num_steps = None
        self.stats = DraftStats()
        self.originals = []  # (attention module, its processor before enable)
        self.hooks = []
        self._layouts = {}

    def in_dense_step(self):
        if self.num_steps is None:
            return self.config.dense_steps_fraction > 0
        return self.step < self.config.dense_steps_fraction * self.num_steps

    def video_layout(self):
        """The layout of the current grid's video tokens alone (what the permute-once hooks move)."""
        return self._layout(0, False)

    def attention_layout(self, tokens, text_len=0, text_first=False):
        """The layout of one self-attention call of `tokens` rows, checked against the grid."""
        layout = self._layout(text_len, text_first)
        expected = region_major_tokens(layout) if self.region_major else layout.tokens
        if tokens != expected:
            order = "padded region-major" if self.region_major else "model"
            raise RuntimeError(f"the attention sequence has {tokens} tokens but the latent grid {self.grid} with "
                               f"{text_len} text tokens gives {expected} in {order} order")
        return layout

    def _layout(self, text_len, text_first):
        # Cached: a VideoLayout caches its index tensors per device.
        if self.grid is None:
            raise RuntimeError("draft attention was called outside the transformer's forward: no latent grid "
                               "recorded (call the transformer itself, not a block)")
        key = (self.grid, text_len, text_first)
        if key not in self._layouts:
            self._layouts[key] = VideoLayout(*self.grid, region=self.config.region, text_len=text_len,
                                             text_first=text_first)
        return self._layouts[key]


def state_of(transformer):
    """The DraftState of an enabled transformer; ValueError if draft attention is not enabled."""
    state = getattr(transformer, STATE_ATTRIBUTE, None)
    if state is None:
        raise ValueError(f"draft attention is not enabled on this {type(transformer).__name__}; call enable() first")
    return state
