"""DraftState: what an enabled transformer carries between calls (config, grid, step, stats)."""
from ..layout import VideoLayout
from .stats import DraftStats

STATE_ATTRIBUTE = "_draftattn_state"


class DraftState:
    """Shared by the hook and all draft processors of one transformer.

    `grid` is the latent (frames, height, width) after patchify of the current forward, set by
    the transformer's forward pre-hook. `step` / `num_steps` come from set_step; before any
    call the model is at step 0 of an unknown count, which is dense whenever
    dense_steps_fraction > 0, whatever the count.
    """

    def __init__(self, config, family, dense_layers):
        self.config = config
        self.family = family
        self.dense_layers = dense_layers
        self.grid = None
        self.step = 0
        self.num_steps = None
        self.stats = DraftStats()
        self.originals = []  # (attention module, its processor before enable)
        self.hook = None
        self._layouts = {}

    def in_dense_step(self):
        if self.num_steps is None:
            return self.config.dense_steps_fraction > 0
        return self.step < self.config.dense_steps_fraction * self.num_steps

    def layout(self, tokens, text_len=0, text_first=False):
        """The VideoLayout of the current grid (cached: it caches its index tensors per device)."""
        if self.grid is None:
            raise RuntimeError("draft attention was called outside the transformer's forward: no latent grid "
                               "recorded (call the transformer itself, not a block)")
        key = (self.grid, text_len, text_first)
        if key not in self._layouts:
            self._layouts[key] = VideoLayout(*self.grid, region=self.config.region, text_len=text_len,
                                             text_first=text_first)
        layout = self._layouts[key]
        if layout.tokens != tokens:
            raise RuntimeError(f"the attention sequence has {tokens} tokens but the latent grid {self.grid} "
                               f"with {text_len} text tokens gives {layout.tokens}")
        return layout


def state_of(transformer):
    """The DraftState of an enabled transformer; ValueError if draft attention is not enabled."""
    state = getattr(transformer, STATE_ATTRIBUTE, None)
    if state is None:
        raise ValueError(f"draft attention is not enabled on this {type(transformer).__name__}; call enable() first")
    return state
