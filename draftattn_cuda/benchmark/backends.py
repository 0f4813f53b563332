"""The attention implementations a case is timed with, each as a no-argument callable.

Dense backends read the model-order q, k, v of the real tokens; sparse ones read the
region-major tensors and the case's block lists. Every callable returns the attention output
as (batch, rows, heads, head_dim) so outputs can be compared.
"""
import functools

import torch

from ..fidelity.blocks import keep_to_lists, lists_to_keep
from ..layout import BLOCK_SIZE
from .checks import real_rows

GPU_DENSE = ("cudnn", "fa2")
GPU_SPARSE = ("ours", "ours-fp8", "flex")
CPU_DENSE = ("sdpa-cpu",)
CPU_SPARSE = ("ours", "ours-fp8")
DESCRIPTIONS = {
    "ours": "torch.ops.draftattn.sparse_attn (the CUDA kernel on a GPU, the ATen reference on the CPU)",
    "ours-fp8": "sparse_attn_fp8 on quantize_fp8 inputs (e4m3 q, k, v and P); quantisation timed apart, "
                "in the overhead column",
    "flex": "FlexAttention (torch.compile) with a BlockMask of the same block lists",
    "cudnn": "dense scaled_dot_product_attention, cuDNN backend",
    "fa2": "dense scaled_dot_product_attention, FlashAttention-2 backend",
    "sdpa-cpu": "dense scaled_dot_product_attention on the CPU",
}
# Backends whose calls are our own ops only, so a CUDA graph can capture them.
GRAPHABLE = ("ours", "ours-fp8")


def heads_first(t):
    return t.transpose(1, 2)


def dense_callable(backend, inputs):
    q, k, v = (heads_first(t) for t in (inputs.q, inputs.k, inputs.v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if backend == "sdpa-cpu":
        return lambda: heads_first(sdpa(q, k, v))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    choice = {"cudnn": SDPBackend.CUDNN_ATTENTION, "fa2": SDPBackend.FLASH_ATTENTION}[backend]

    def call():
        with sdpa_kernel(choice):
            return heads_first(sdpa(q, k, v))
    return call


def ours_callable(inputs, kv_indices, kv_counts, block_lens):
    def call():
        return torch.ops.draftattn.sparse_attn(inputs.q_regions, inputs.k_regions, inputs.v_regions, kv_indices,
                                               kv_counts, block_lens, None)[0]
    return call


def ours_fp8_callable(quantized, kv_indices, kv_counts, block_lens):
    q8, k8, v_t8, q_descale, k_descale, v_descale = quantized

    def call():
        return torch.ops.draftattn.sparse_attn_fp8(q8, k8, v_t8, kv_indices, kv_counts, q_descale, k_descale,
                                                   v_descale, block_lens, None)[0]
    return call


def flex_block_mask(shape, kv_indices, kv_counts):
    """A FlexAttention BlockMask of the same block lists, over the rows sparse_attn runs on.

    The compiled Flex kernel visits only the listed blocks and runs mask_mod on the partial ones
    alone. Flat shape: every listed block is full (Flex cuts the last one at the sequence end).
    Video shape: listed key blocks with 128 real tokens are full; partial edge regions and a short
    last text block are partial blocks whose mask_mod drops the padding keys.
    """
    from torch.nn.attention.flex_attention import BlockMask

    device, rows = kv_counts.device, shape.padded_tokens
    keep = lists_to_keep(kv_indices, kv_counts)
    mask_mod = None
    full_key = torch.ones(shape.num_blocks, dtype=torch.bool, device=device)
    if shape.layout:
        full_key = shape.block_lens(device) == BLOCK_SIZE
        mask_mod = padding_key_mask_mod(shape, device)
    # Rows are (batch, heads, nb, nb) so Flex sees nb key blocks; it reads only the first `count`
    # entries of a row, and 0 (a valid block) fills the rest.
    full_indices, full_counts = keep_to_lists(keep & full_key)
    partial_indices, partial_counts = keep_to_lists(keep & ~full_key)
    return BlockMask.from_kv_blocks(partial_counts, partial_indices.clamp(min=0), full_counts,
                                    full_indices.clamp(min=0), BLOCK_SIZE=BLOCK_SIZE, mask_mod=mask_mod,
                                    seq_lengths=(rows, rows), compute_q_blocks=False)


@functools.lru_cache(maxsize=None)
def padding_key_mask_mod(shape, device):
    """mask_mod keeping real keys, one function per shape so the compiled Flex is reused across densities."""
    real_key = real_rows(shape, device)

    def key_is_real(batch, head, q_index, kv_index):
        return real_key[kv_index]
    return key_is_real


def flex_callable(flex, inputs, block_mask):
    q, k, v = (heads_first(t) for t in (inputs.q_regions, inputs.k_regions, inputs.v_regions))
    return lambda: heads_first(flex(q, k, v, block_mask=block_mask))
