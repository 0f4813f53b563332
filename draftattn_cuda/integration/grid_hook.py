"""The transformer forward pre-hook that records the latent grid of each call."""
from .state import STATE_ATTRIBUTE


def record_latent_grid(transformer, args, kwargs):
    """Stores (frames, height, width) after patchify, read from hidden_states' shape."""
    hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    state = getattr(transformer, STATE_ATTRIBUTE)
    state.grid = state.family.latent_grid(transformer.config, tuple(hidden_states.shape))
