"""torch.library.opcheck for every op: schema, fake kernel, dispatch under AOT autograd."""
import pytest
import torch

import draftattn_cuda as da
from attention_math import random_block_lists, random_qkv

LAYOUT = da.VideoLayout(2, 10, 20, text_len=40)


def op_samples(rng):
    x = torch.randn(1, LAYOUT.tokens, 2, 64, generator=rng).to(torch.bfloat16)
    q, k, v = random_qkv((1, LAYOUT.padded_tokens, 2, 64), torch.bfloat16, rng)
    kv_indices, kv_counts = random_block_lists(1, 2, LAYOUT.num_blocks, rng)
    pooled = [torch.randn(1, 2, LAYOUT.num_regions, 64, generator=rng) for _ in range(2)]
    regions = LAYOUT.to_regions(x)
    return {
        "sparse_attn": (q, k, v, kv_indices, kv_counts, LAYOUT.block_lens(), 0.125),
        "mean_pool": (x, *LAYOUT.op_args),
        "draft_select": (*pooled, "global", 0.7, 0.9, LAYOUT.text_blocks, LAYOUT.text_first),
        "to_regions": (x, *LAYOUT.op_args),
        "from_regions": (regions, *LAYOUT.op_args),
        "to_regions_and_pool": (x, x.clone(), x.clone(), *LAYOUT.op_args),
    }


@pytest.mark.parametrize("name", ["sparse_attn", "mean_pool", "draft_select", "to_regions", "from_regions",
                                  "to_regions_and_pool"])
def test_opcheck(name, rng):
    torch.library.opcheck(getattr(torch.ops.draftattn, name).default, op_samples(rng)[name])


def test_sparse_attn_opcheck_without_optional_args(rng):
    q, k, v = random_qkv((2, 300, 2, 128), torch.float16, rng)
    kv_indices, kv_counts = random_block_lists(2, 2, 3, rng)
    torch.library.opcheck(torch.ops.draftattn.sparse_attn.default, (q, k, v, kv_indices, kv_counts))
