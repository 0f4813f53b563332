"""The denoising step, which decides whether a call runs dense (the first steps) or sparse."""
from .state import state_of


def set_step(transformer, step, num_steps):
    """Tells the transformer that the next forward calls belong to step `step` of `num_steps`."""
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (isinstance(step, int) and 0 <= step < num_steps):
        raise ValueError(f"step must be an integer in [0, num_steps={num_steps}), got {step!r}")
    state = state_of(transformer)
    state.step, state.num_steps = step, num_steps


def denoising_step_callback(*transformers):
    """A diffusers `callback_on_step_end` that advances the step of every given transformer.

    Pass all transformers the pipeline runs (Wan2.2: transformer and transformer_2). After the
    last step the count wraps to 0, so the next generation starts dense again.
    """
    def on_step_end(pipeline, step_index, timestep, callback_kwargs):
        num_steps = pipeline.num_timesteps
        for transformer in transformers:
            set_step(transformer, (step_index + 1) % num_steps, num_steps)
        return callback_kwargs
    return on_step_end
