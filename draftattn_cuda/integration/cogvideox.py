"""CogVideoX (CogVideoXTransformer3DModel): draft attention in the blocks' joint attn1.

CogVideoX attends over [text; video] in one sequence, text first; text rows and columns stay
dense (the layout's text blocks are always kept). Head dim 64 for the 5B model.
"""
import torch

from .family import ModelFamily
from .processor import DraftProcessor
from .region_major import from_region_rows, to_region_rows
from .rotary import rotate_token_range


class CogVideoXDraftProcessor(DraftProcessor):
    """CogVideoX's joint self-attention (per-head q/k LayerNorm, rotary on video tokens only).

    In region-major order the text is padded to whole 128-row blocks before the video blocks."""

    context_parallel_refusal = ("diffusers ships no context-parallel plan for CogVideoXTransformer3DModel, whose blocks "
                                "attend over text and video joined in one sequence")

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        if self.uses_stock_path(unsupported_mask=attention_mask is not None):
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        text_len = encoder_hidden_states.shape[1]
        video_start = self.video_start(text_len, text_first=True)
        text_padding = hidden_states.new_zeros(hidden_states.shape[0], video_start - text_len, hidden_states.shape[2])
        joint = torch.cat([encoder_hidden_states, text_padding, hidden_states], dim=1)
        if getattr(attn, "fused_projections", False):
            q, k, v = attn.to_qkv(joint).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(joint), attn.to_k(joint), attn.to_v(joint)
        q, k, v = (t.unflatten(2, (attn.heads, -1)) for t in (q, k, v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            video_tokens = hidden_states.shape[1]
            q = rotate_token_range(q, video_start, video_tokens, *image_rotary_emb)
            k = rotate_token_range(k, video_start, video_tokens, *image_rotary_emb)
        out = self.attend(q, k, v, text_len=text_len, text_first=True, padding_rows_zero=image_rotary_emb is not None)
        out = attn.to_out[1](attn.to_out[0](out.flatten(2, 3)))
        return out[:, video_start:], out[:, :text_len]


def self_attention_modules(transformer):
    return [block.attn1 for block in transformer.transformer_blocks]


def latent_grid(config, shape):
    # hidden_states: (batch, frames, channels, height, width); CogVideoX 1.5 also patchifies time.
    p, p_t = config.patch_size, config.patch_size_t or 1
    return shape[1] // p_t, shape[3] // p, shape[4] // p


def region_major_hooks(transformer, state):
    """The video part of the patch embedding's [text; video] output and the rotary tables (a model
    input) into region-major order; the output projection's tokens back to model order."""
    def patch_embed(module, args, out):
        text_len = args[0].shape[1]  # patch_embed(text_embeds, image_embeds)
        video = to_region_rows(out[:, text_len:], state.video_layout(), dim=1)
        return torch.cat([out[:, :text_len], video], dim=1)

    def rotary_input(module, args, kwargs):
        if kwargs.get("image_rotary_emb") is not None:
            layout = state.video_layout()
            kwargs["image_rotary_emb"] = tuple(to_region_rows(t, layout, dim=0) for t in kwargs["image_rotary_emb"])
        elif len(args) > 5 and args[5] is not None:
            raise ValueError("DraftConfig.permute_once: pass image_rotary_emb to CogVideoXTransformer3DModel by "
                             "keyword (as diffusers' pipelines do), so the permute-once hook can reorder it")
        return args, kwargs

    def proj_out(module, args, out):
        return from_region_rows(out, state.video_layout(), dim=1)

    return [transformer.register_forward_pre_hook(rotary_input, with_kwargs=True),
            transformer.patch_embed.register_forward_hook(patch_embed),
            transformer.proj_out.register_forward_hook(proj_out)]


COGVIDEOX = ModelFamily(name="CogVideoX", processor=CogVideoXDraftProcessor, default_dense_layers=(0,),
                        self_attention_modules=self_attention_modules, latent_grid=latent_grid,
                        region_major_hooks=region_major_hooks)
