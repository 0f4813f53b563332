"""Video-like q, k, v on a (frames, height, width) latent grid, one ingredient per function.

Every video token gets a content vector; q and k are noisy copies of it (so tokens with
similar content attend to each other), rotated by the 3D rotary embedding; v is a random
linear map of the content plus noise. Scenes: "smooth" has only the background field,
"video" adds moving objects and repeated structures.
"""
import math

import torch

from .rotary import apply_rotary, rotary_angles

SCENES = ("smooth", "video")
# Objects and motifs stand out of the unit-variance background, as distinct things in a video do.
FEATURE_STRENGTH = 2.5


def token_grid(layout, device="cpu"):
    """(frame, row, column) of every video token, each (video_tokens,) int64, in model order."""
    f, y, x = torch.meshgrid(*(torch.arange(n, device=device) for n in (layout.frames, layout.height, layout.width)),
                             indexing="ij")
    return f.flatten(), y.flatten(), x.flatten()


def smooth_field(layout, channels, generator, cell=6):
    """(video_tokens, channels) unit-variance field that varies slowly in space and time."""
    coarse = torch.randn(1, channels, math.ceil(layout.frames / 2) + 1, math.ceil(layout.height / cell) + 1,
                         math.ceil(layout.width / cell) + 1, generator=generator, device=generator.device)
    field = torch.nn.functional.interpolate(coarse, size=(layout.frames, layout.height, layout.width),
                                            mode="trilinear", align_corners=True)
    field = field.flatten(2).transpose(0, 2).squeeze(-1)
    return field / field.std(0, keepdim=True)


def object_tracks(layout, count, generator):
    """Centres (count, frames, 2) of objects moving at 3-8 tokens per frame, wrapping around the frame.

    Moving at least a quarter of a region per frame, an object's tokens end up in other
    regions in later frames than in the first.
    """
    device = generator.device
    size = torch.tensor([float(layout.height), float(layout.width)], device=device)
    start = torch.rand(count, 2, generator=generator, device=device) * size
    speed = 3 + 5 * torch.rand(count, 2, generator=generator, device=device)
    sign = torch.randint(0, 2, (count, 2), generator=generator, device=device) * 2 - 1
    frames = torch.arange(layout.frames, dtype=torch.float32, device=device)[None, :, None]
    centres = start[:, None, :] + (speed * sign)[:, None, :] * frames
    return centres % size


def object_weights(layout, centres, radius=5.0):
    """(count, video_tokens) soft disc of each object around its centre in its frame (torus distance)."""
    f, y, x = token_grid(layout, centres.device)
    centre = centres[:, f]
    dy = (y - centre[..., 0]).abs()
    dx = (x - centre[..., 1]).abs()
    dy = torch.minimum(dy, layout.height - dy)
    dx = torch.minimum(dx, layout.width - dx)
    return torch.exp(-(dy**2 + dx**2) / (2 * radius**2))


def repeated_structure(layout, channels, generator, copies=3, size=(4, 4)):
    """A motif of `size` tokens stamped at `copies` places spread across every frame.

    Returns (weights (video_tokens,), content (video_tokens, channels)): copies share the motif's
    features position by position, so a token attends to its twins far away in the frame.
    """
    device = generator.device
    motif = FEATURE_STRENGTH * torch.randn(size[0], size[1], channels, generator=generator, device=device)
    rows = torch.randint(0, layout.height - size[0] + 1, (copies,), generator=generator, device=device)
    span = max(layout.width // copies, size[1])
    cols = [min(i * span + int(torch.randint(0, span - size[1] + 1, (1,), generator=generator, device=device)),
                layout.width - size[1])
            for i in range(copies)]
    weights = torch.zeros(layout.frames, layout.height, layout.width, device=device)
    content = torch.zeros(layout.frames, layout.height, layout.width, channels, device=device)
    for row, col in zip(rows.tolist(), cols):
        weights[:, row:row + size[0], col:col + size[1]] = 1
        content[:, row:row + size[0], col:col + size[1]] = motif
    return weights.flatten(), content.flatten(0, 2)


def paint(base, weights, features):
    """Blends base (tokens, channels) towards features (tokens, channels) where weights (tokens,) is 1."""
    weights = weights.clamp(max=1).unsqueeze(-1)
    return base * (1 - weights) + features * weights


def scene_content(layout, channels, scene, generator, objects=3):
    """(video_tokens, channels) content vectors of one scene."""
    content = smooth_field(layout, channels, generator)
    if scene == "smooth":
        return content
    if scene != "video":
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    weights = object_weights(layout, object_tracks(layout, objects, generator))
    features = FEATURE_STRENGTH * torch.randn(objects, channels, generator=generator, device=generator.device)
    for weight, feature in zip(weights, features):
        content = paint(content, weight, feature.expand_as(content))
    return paint(content, *repeated_structure(layout, channels, generator))


def with_text(layout, video, generator):
    """Adds random text tokens before or after the video tokens, as the layout says."""
    text = torch.randn(video.shape[0], layout.text_len, *video.shape[2:], generator=generator, device=video.device)
    return torch.cat([text, video] if layout.text_first else [video, text], 1)


def video_qkv(layout, heads, head_dim, scene="video", sharpness=1.0, seed=0, noise=0.5, dtype=torch.float16,
              device="cpu"):
    """q, k, v (1, layout.tokens, heads, head_dim) in model order; sharpness scales q.

    Built on `device` with a generator there: a seed gives other inputs on a GPU than on the CPU.
    """
    generator = torch.Generator(device).manual_seed(seed)
    content = scene_content(layout, heads * head_dim, scene, generator).view(1, layout.video_tokens, heads, head_dim)
    # A self-similarity logit of about 12 at sharpness 1: most mass near a token, not all of it.
    amplitude = (12.0 / head_dim**0.5) ** 0.5
    angles = rotary_angles(*token_grid(layout, generator.device), head_dim)

    def noisy_copy():
        return content + noise * torch.randn(content.shape, generator=generator, device=generator.device)

    q = with_text(layout, apply_rotary(amplitude * sharpness * noisy_copy(), angles), generator)
    k = with_text(layout, apply_rotary(amplitude * noisy_copy(), angles), generator)
    mixing = torch.randn(heads, head_dim, head_dim, generator=generator, device=generator.device) / head_dim**0.5
    v = with_text(layout, torch.einsum("bthd,hde->bthe", noisy_copy(), mixing), generator)
    return tuple(t.to(dtype).contiguous() for t in (q, k, v))
