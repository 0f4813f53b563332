"""Switch diffusers video transformers (Wan2.1/2.2, HunyuanVideo, CogVideoX) to draft attention.

    stats = enable(pipe.transformer, DraftConfig(sparsity=0.9))
    pipe(..., callback_on_step_end=denoising_step_callback(pipe.transformer))
    disable(pipe.transformer)

Context parallelism: Wan runs under diffusers' Ulysses context parallelism
(`transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=P))`, before or after
enable()); each rank drafts its own heads over the whole sequence (see ulysses.py). Ring attention,
permute_once, HunyuanVideo and CogVideoX are refused with an error naming the option.

Only self-attention processors are replaced; diffusers is not imported here (models are
recognised by class name), so importing this package costs nothing without diffusers.
"""
from .config import DraftConfig
from .schedule import denoising_step_callback, set_step
from .stats import DraftStats
from .switch import disable, enable

__all__ = ["DraftConfig", "DraftStats", "denoising_step_callback", "disable", "enable", "set_step"]
