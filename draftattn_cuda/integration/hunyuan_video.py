"""HunyuanVideo (HunyuanVideoTransformer3DModel): draft attention in the self-attention of both
the dual-stream and the single-stream blocks.

The sequence is [video; text], text last (up to 256 tokens, padded per prompt). The model builds
a key mask, (batch, 1, 1, tokens) bool, True on every video token and on the first valid text
tokens of each sample; the processor turns it into per-sample text lengths (a device tensor, no
host sync), so padded text keys are skipped by the kernel (block_lens per sample) while the text
blocks themselves stay dense as in every family.
"""
import torch

from .family import ModelFamily
from .processor import DraftProcessor
from .region_major import from_region_rows, to_region_rows
from .rotary import rotate_token_range


class HunyuanVideoDraftProcessor(DraftProcessor):
    """HunyuanVideo's attention: per-head RMS norm of q and k, rotary on the video tokens; text either
    through its own projections (dual-stream blocks) or concatenated before them (single-stream)."""

    context_parallel_refusal = ("diffusers ships no context-parallel plan for HunyuanVideoTransformer3DModel, so there "
                                "is no split of its [video; text] sequence and text mask to follow")

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        text_len = 0 if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        text_lens, understood = text_lengths_from_mask(attention_mask, text_len)
        if self.uses_stock_path(unsupported_mask=not understood):
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        text_projected_apart = attn.add_q_proj is not None
        if text_len and not text_projected_apart:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        q, k, v = (project(hidden_states).unflatten(2, (attn.heads, -1)) for project in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            video_tokens = q.shape[1] - (0 if text_projected_apart else text_len)
            q = rotate_token_range(q, 0, video_tokens, *image_rotary_emb)
            k = rotate_token_range(k, 0, video_tokens, *image_rotary_emb)
        if text_len and text_projected_apart:
            text_q, text_k, text_v = (project(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                                      for project in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            if attn.norm_added_q is not None:
                text_q = attn.norm_added_q(text_q)
            if attn.norm_added_k is not None:
                text_k = attn.norm_added_k(text_k)
            q, k, v = torch.cat([q, text_q], dim=1), torch.cat([k, text_k], dim=1), torch.cat([v, text_v], dim=1)

        out = self.attend(q, k, v, text_len=text_len, text_lens=text_lens, padding_rows_zero=image_rotary_emb is not None)
        out = out.flatten(2, 3).to(q.dtype)
        if not text_len:
            return out, encoder_hidden_states
        video, text = out[:, :-text_len], out[:, -text_len:]
        if getattr(attn, "to_out", None) is not None:
            video = attn.to_out[1](attn.to_out[0](video))
        if getattr(attn, "to_add_out", None) is not None:
            text = attn.to_add_out(text)
        return video, text


def text_lengths_from_mask(attention_mask, text_len):
    """(per-sample valid text lengths or None, whether the mask is a key mask this processor understands).

    Understood: no mask, or HunyuanVideo's (batch, 1, 1, tokens) bool key mask whose last `text_len`
    columns mark each sample's valid text (the model builds it as a prefix, from the prompt's mask
    sum); its video columns are all True by construction.
    """
    if attention_mask is None:
        return None, True
    if (text_len == 0 or attention_mask.dtype != torch.bool or attention_mask.dim() != 4
            or attention_mask.shape[1:3] != (1, 1) or attention_mask.shape[3] < text_len):
        return None, False
    return attention_mask[:, 0, 0, -text_len:].sum(-1, dtype=torch.int32), True


def self_attention_modules(transformer):
    return ([block.attn for block in transformer.transformer_blocks]
            + [block.attn for block in transformer.single_transformer_blocks])


def latent_grid(config, shape):
    # hidden_states: (batch, channels, frames, height, width); the patch embedding is a strided conv.
    p, p_t = config.patch_size, config.patch_size_t
    return shape[2] // p_t, shape[3] // p, shape[4] // p


def region_major_hooks(transformer, state):
    """Patch embedding output and rotary tables into region-major order; the output projection's
    tokens back to model order. The key mask is built by the model from the (padded) video length."""
    if transformer.config.image_condition_type == "token_replace":
        raise ValueError("DraftConfig.permute_once is not supported for HunyuanVideo with "
                         "image_condition_type='token_replace': its blocks treat the first frame's tokens as a "
                         "contiguous model-order prefix; use permute_once=False")

    def x_embedder(module, args, out):
        return to_region_rows(out, state.video_layout(), dim=1)

    def rope(module, args, out):
        return tuple(to_region_rows(table, state.video_layout(), dim=0) for table in out)

    def proj_out(module, args, out):
        return from_region_rows(out, state.video_layout(), dim=1)

    return [transformer.x_embedder.register_forward_hook(x_embedder),
            transformer.rope.register_forward_hook(rope),
            transformer.proj_out.register_forward_hook(proj_out)]


# The paper keeps HunyuanVideo's first two dual-stream blocks dense.
HUNYUAN_VIDEO = ModelFamily(name="HunyuanVideo", processor=HunyuanVideoDraftProcessor, default_dense_layers=(0, 1),
                            self_attention_modules=self_attention_modules, latent_grid=latent_grid,
                            region_major_hooks=region_major_hooks)
