"""Wan2.1 / Wan2.2 (WanTransformer3DModel): draft attention in the blocks' attn1."""
import torch

from .family import ModelFamily
from .processor import DraftProcessor
from .region_major import from_region_rows, to_region_rows


class WanDraftProcessor(DraftProcessor):
    """Wan's self-attention (q/k RMS norm across heads, rotary embedding) with draft attention.

    Runs under diffusers' Ulysses context parallelism: Wan's plan splits only the video tokens (and
    their rotary tables) along the sequence, which is all attn1 attends over."""

    context_parallel = True

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        # Installed on attn1 only; a context would make it cross-attention, which stays dense.
        if encoder_hidden_states is not None or self.uses_stock_path(unsupported_mask=attention_mask is not None):
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        if getattr(attn, "fused_projections", False):
            q, k, v = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        q = attn.norm_q(q).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(k).unflatten(2, (attn.heads, -1))
        v = v.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q, k = rotate_pairs(q, *rotary_emb), rotate_pairs(k, *rotary_emb)
        out = self.attend(q, k, v, padding_rows_zero=rotary_emb is not None)
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def rotate_pairs(x, cos, sin):
    """Wan's rotary embedding: channels (2i, 2i+1) form a complex number rotated by angle_i.

    cos and sin hold every angle twice (interleaved), so even columns of cos and odd columns of
    sin give one value per pair. The math runs in the tables' precision, as in the stock model.
    """
    real, imag = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


def self_attention_modules(transformer):
    return [block.attn1 for block in transformer.blocks]


def latent_grid(config, shape):
    # hidden_states: (batch, channels, frames, height, width); the patch embedding is a strided conv.
    p_t, p_h, p_w = config.patch_size
    return shape[2] // p_t, shape[3] // p_h, shape[4] // p_w


def region_major_hooks(transformer, state):
    """Patch embedding, rotary tables and (Wan2.2 TI2V) per-token timestep embeddings into
    region-major order; the output projection's tokens back to model order."""
    def patch_embedding(module, args, out):
        # (batch, channels, frames, height, width) -> (batch, channels, rows, 1, 1): the model's own
        # flatten(2).transpose(1, 2) then yields the region-major token sequence.
        return to_region_rows(out.flatten(2), state.video_layout(), dim=2)[..., None, None]

    def rope(module, args, out):
        return tuple(to_region_rows(table, state.video_layout(), dim=1) for table in out)

    def condition_embedder(module, args, out):
        temb, timestep_proj, *rest = out
        if temb.ndim != 3:  # one timestep per sample: nothing is per token
            return out
        layout = state.video_layout()
        return (to_region_rows(temb, layout, dim=1), to_region_rows(timestep_proj, layout, dim=1), *rest)

    def proj_out(module, args, out):
        return from_region_rows(out, state.video_layout(), dim=1)

    return [transformer.patch_embedding.register_forward_hook(patch_embedding),
            transformer.rope.register_forward_hook(rope),
            transformer.condition_embedder.register_forward_hook(condition_embedder),
            transformer.proj_out.register_forward_hook(proj_out)]


WAN = ModelFamily(name="Wan", processor=WanDraftProcessor, default_dense_layers=(0,),
                  self_attention_modules=self_attention_modules, latent_grid=latent_grid,
                  region_major_hooks=region_major_hooks)
