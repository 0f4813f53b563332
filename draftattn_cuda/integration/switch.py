"""enable / disable: swap a transformer's self-attention processors in and out."""
from .config import DraftConfig
from .families import family_of
from .grid_hook import record_latent_grid
from .state import STATE_ATTRIBUTE, DraftState, state_of


def enable(transformer, config=None):
    """Runs the transformer's self-attention through draft attention; returns its DraftStats.

    Layers in the dense set keep their processor (with DraftConfig.permute_once they get a draft
    processor too, which keeps every block); every other self-attention module gets a draft
    processor that wraps the original. Enabling again first restores the originals.
    """
    config = DraftConfig() if config is None else config
    if not isinstance(config, DraftConfig):
        raise ValueError(f"config must be a DraftConfig, got {type(config).__name__}")
    family = family_of(transformer)
    modules = family.self_attention_modules(transformer)
    dense_layers = family.default_dense_layers if config.dense_layers is None else config.dense_layers
    out_of_range = [i for i in dense_layers if i >= len(modules)]
    if out_of_range:
        raise ValueError(f"DraftConfig.dense_layers has indices {out_of_range} but this {family.name} model has "
                         f"{len(modules)} self-attention layers")
    if getattr(transformer, STATE_ATTRIBUTE, None) is not None:
        disable(transformer)

    state = DraftState(config, family, frozenset(dense_layers))
    # The hooks come first: a model variant that cannot permute once refuses before anything changes.
    state.hooks.append(transformer.register_forward_pre_hook(record_latent_grid, with_kwargs=True))
    try:
        if config.permute_once:
            state.hooks.extend(family.region_major_hooks(transformer, state))
    except Exception:
        for hook in state.hooks:
            hook.remove()
        raise
    for layer, module in enumerate(modules):
        if config.permute_once or layer not in state.dense_layers:
            state.originals.append((module, module.processor))
            module.set_processor(family.processor(state, layer, module.processor))
    setattr(transformer, STATE_ATTRIBUTE, state)
    return state.stats


def disable(transformer):
    """Puts back the exact processor objects that enable() replaced and removes the hooks."""
    state = state_of(transformer)
    for module, original in state.originals:
        module.set_processor(original)
    for hook in state.hooks:
        hook.remove()
    delattr(transformer, STATE_ATTRIBUTE)
