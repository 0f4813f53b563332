"""ModelFamily: what enable() needs to know about one diffusers transformer class."""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelFamily:
    """name; processor: the DraftProcessor subclass; default_dense_layers: indices into
    self_attention_modules(transformer), the ordered self-attention modules; latent_grid(config,
    hidden_states shape) -> (frames, height, width) after patchify; region_major_hooks(transformer,
    state) -> hook handles that keep the video tokens in region-major order for DraftConfig.permute_once
    (raises ValueError naming the option when a model variant cannot)."""

    name: str
    processor: type
    default_dense_layers: tuple
    self_attention_modules: Callable
    latent_grid: Callable
    region_major_hooks: Callable
