"""The supported diffusers transformer classes, recognised by class name (no diffusers import)."""
from .cogvideox import COGVIDEOX
from .hunyuan_video import HUNYUAN_VIDEO
from .wan import WAN

FAMILIES = {
    "CogVideoXTransformer3DModel": COGVIDEOX,
    "HunyuanVideoTransformer3DModel": HUNYUAN_VIDEO,
    "WanTransformer3DModel": WAN,
}


def family_of(transformer):
    name = type(transformer).__name__
    if name not in FAMILIES:
        raise ValueError(f"draft attention supports {sorted(FAMILIES)}, got {name}")
    return FAMILIES[name]
