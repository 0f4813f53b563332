"""A small sparse_attn / sparse_attn_fp8 call for compute-sanitizer: partial blocks, a short
sequence tail, empty and full rows."""
import torch

import draftattn_cuda as da

generator = torch.Generator().manual_seed(0)
tokens, heads, blocks = 700, 2, 6
q, k, v = (torch.randn(1, tokens, heads, 128, generator=generator).cuda().bfloat16() for _ in range(3))
keep = torch.rand(1, heads, blocks, blocks, generator=generator) < 0.5
keep[..., 0, :] = False
keep[..., -1, :] = True
columns = torch.where(keep, torch.arange(blocks), blocks).sort(-1).values
kv_indices = torch.where(columns == blocks, -1, columns).int().cuda()
kv_counts = keep.sum(-1).int().cuda()
block_lens = torch.tensor([128, 77, 128, 5, 128, tokens - 5 * 128], dtype=torch.int32).cuda()
da.sparse_attn(q, k, v, kv_indices, kv_counts, block_lens)
quantized = da.quantize_fp8(q, k, v)
da.sparse_attn_fp8(*quantized[:3], kv_indices, kv_counts, *quantized[3:], block_lens)
torch.cuda.synchronize()
print("sanitize case ran")
