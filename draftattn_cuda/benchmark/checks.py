"""Output checks of a case: relative L2 error over the real (unpadded) rows."""
import torch

from ..fidelity.blocks import lists_to_keep


def real_rows(shape, device):
    """bool (padded_tokens,): the rows of the sparse layout that hold a real token."""
    if shape.layout is None:
        return torch.ones(shape.padded_tokens, dtype=torch.bool, device=device)
    return shape.layout.region_index(device) >= 0


def relative_l2(got, want, rows):
    """Relative L2 error of got against want, (batch, rows, heads, dim) each, over the selected rows."""
    got, want = got[:, rows].float(), want[:, rows].float()
    return (torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want)).item()


def masked_reference(shape, inputs, kv_indices, kv_counts):
    """fp32 dense attention over the sparse layout's rows, restricted to the token pairs the block lists
    keep and to real keys: the exact answer sparse_attn must give. Holds a (rows x rows) mask: small shapes only."""
    device = kv_counts.device
    row_block = torch.arange(shape.padded_tokens, device=device) // 128
    keep = lists_to_keep(kv_indices, kv_counts)[:, :, row_block][:, :, :, row_block]
    mask = keep & real_rows(shape, device)
    q, k, v = (t.float().transpose(1, 2) for t in (inputs.q_regions, inputs.k_regions, inputs.v_regions))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
