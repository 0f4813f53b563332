"""CogVideoX (CogVideoXTransformer3DModel): draft attention in the blocks' joint attn1.

CogVideoX attends over [text; video] in one sequence, text first; text rows and columns stay
dense (the layout's text blocks are always kept). Head dim 64 for the 5B model.
"""
import torch

from .family import ModelFamily
from .processor import DraftProcessor


class CogVideoXDraftProcessor(DraftProcessor):
    """CogVideoX's joint self-attention (per-head q/k LayerNorm, rotary on video tokens only)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        if self.runs_dense(attention_mask):
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        text_len = encoder_hidden_states.shape[1]
        joint = torch.cat([encoder_hidden_states, hidden_states], dim=1)
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
            q = rotate_video_tokens(q, text_len, *image_rotary_emb)
            k = rotate_video_tokens(k, text_len, *image_rotary_emb)
        out = self.attend(q, k, v, self.state.layout(q.shape[1], text_len=text_len, text_first=True))
        out = attn.to_out[1](attn.to_out[0](out.flatten(2, 3)))
        return out[:, text_len:], out[:, :text_len]


def rotate_video_tokens(x, text_len, cos, sin):
    """CogVideoX's rotary embedding on the video tokens of (batch, tokens, heads, head_dim) x.

    Channel pairs (2i, 2i+1) rotate as complex numbers; cos and sin, (video tokens, head_dim),
    hold each pair's angle twice. Computed in fp32 and rounded back, as the stock model does.
    """
    video = x[:, text_len:]
    real, imag = video.unflatten(-1, (-1, 2)).unbind(-1)
    quarter_turn = torch.stack((-imag, real), dim=-1).flatten(-2)
    cos, sin = cos[None, :, None, :].to(x.device), sin[None, :, None, :].to(x.device)
    rotated = (video.float() * cos + quarter_turn.float() * sin).to(x.dtype)
    return torch.cat([x[:, :text_len], rotated], dim=1)


def self_attention_modules(transformer):
    return [block.attn1 for block in transformer.transformer_blocks]


def latent_grid(config, shape):
    # hidden_states: (batch, frames, channels, height, width); CogVideoX 1.5 also patchifies time.
    p, p_t = config.patch_size, config.patch_size_t or 1
    return shape[1] // p_t, shape[3] // p, shape[4] // p


COGVIDEOX = ModelFamily(name="CogVideoX", processor=CogVideoXDraftProcessor, default_dense_layers=(0,),
                        self_attention_modules=self_attention_modules, latent_grid=latent_grid)
