"""3D rotary position embedding as Wan2.1 applies it to q and k of video tokens."""
import torch


def band_pairs(head_dim):
    """Rotation pairs (complex channels) given to the frame, row and column bands.

    Wan splits head_dim/2 pairs as [c - 2*(c//3), c//3, c//3]: time gets the remainder.
    """
    pairs = head_dim // 2
    return pairs - 2 * (pairs // 3), pairs // 3, pairs // 3


def band_frequencies(pairs, theta=10000.0, device="cpu"):
    """Frequencies of one band, computed over that band's own width as in Wan's rope_params."""
    return 1.0 / theta ** (torch.arange(pairs, dtype=torch.float64, device=device) * 2 / (2 * pairs))


def rotary_angles(frame, row, col, head_dim):
    """(tokens, head_dim/2) angles from each token's (frame, row, column) position."""
    bands = [band_frequencies(pairs, device=frame.device) for pairs in band_pairs(head_dim)]
    return torch.cat([position.double().unsqueeze(-1) * freqs for position, freqs in zip((frame, row, col), bands)], -1)


def apply_rotary(x, angles):
    """Rotates consecutive channel pairs of x (batch, tokens, heads, head_dim) by angles (tokens, head_dim/2)."""
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
    rotation = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)
