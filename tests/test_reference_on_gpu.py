"""On a GPU, every op's CUDA key agrees with the CPU reference."""
import pytest
import torch

import draftattn_cuda as da
from attention_math import random_block_lists, random_qkv

pytestmark = pytest.mark.requires_cuda_build


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_sparse_attn_cuda_matches_cpu_reference(dtype, head_dim, rng):
    layout = da.VideoLayout(2, 30, 52, text_len=77)
    q, k, v = random_qkv((2, layout.padded_tokens, 4, head_dim), dtype, rng)
    kv_indices, kv_counts = random_block_lists(2, 4, layout.num_blocks, rng)
    cpu = da.sparse_attn(q, k, v, kv_indices, kv_counts, layout.block_lens())
    gpu = da.sparse_attn(*(t.cuda() for t in (q, k, v, kv_indices, kv_counts)), layout.block_lens("cuda"))
    torch.testing.assert_close(gpu[0].cpu().float(), cpu[0].float(), atol=2e-2, rtol=0)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("rule", ["global", "topk", "topp"])
def test_drafting_cuda_matches_cpu_reference(rule, rng):
    layout = da.VideoLayout(3, 30, 52, text_len=200, text_first=True)
    q, k, v = random_qkv((1, layout.tokens, 4, 128), torch.bfloat16, rng)
    cpu = torch.ops.draftattn.to_regions_and_pool(q, k, v, *layout.op_args)
    gpu = torch.ops.draftattn.to_regions_and_pool(q.cuda(), k.cuda(), v.cuda(), *layout.op_args)
    for got, want in zip(gpu[:3], cpu[:3]):
        assert torch.equal(got.cpu(), want)
    for got, want in zip(gpu[3:], cpu[3:]):
        torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    select = (rule, 0.8, 0.7, layout.text_blocks, layout.text_first)
    cpu_lists = torch.ops.draftattn.draft_select(cpu[3], cpu[4], *select)
    gpu_lists = torch.ops.draftattn.draft_select(cpu[3].cuda(), cpu[4].cuda(), *select)
    for got, want in zip(gpu_lists, cpu_lists):
        assert torch.equal(got.cpu(), want)
    assert torch.equal(layout.from_regions(gpu[2]).cpu(), v)
