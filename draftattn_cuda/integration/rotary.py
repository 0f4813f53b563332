"""diffusers' interleaved rotary embedding (CogVideoX, HunyuanVideo), written out so the draft
processors apply exactly the stock math to the tokens they choose."""
import torch


def rotate_interleaved(x, cos, sin):
    """Rotary embedding of (batch, tokens, heads, head_dim) x with (tokens, head_dim) tables.

    Channel pairs (2i, 2i+1) rotate as complex numbers; cos and sin hold each pair's angle twice.
    Computed in fp32 and rounded back, as diffusers' apply_rotary_emb(use_real=True) does.
    """
    real, imag = x.unflatten(-1, (-1, 2)).unbind(-1)
    quarter_turn = torch.stack((-imag, real), dim=-1).flatten(-2)
    cos, sin = cos[None, :, None, :].to(x.device), sin[None, :, None, :].to(x.device)
    return (x.float() * cos + quarter_turn.float() * sin).to(x.dtype)


def rotate_token_range(x, start, count, cos, sin):
    """x with rotate_interleaved applied to its tokens [start, start + count) only."""
    rotated = rotate_interleaved(x.narrow(1, start, count), cos, sin)
    return torch.cat([x.narrow(1, 0, start), rotated, x.narrow(1, start + count, x.shape[1] - start - count)], dim=1)
