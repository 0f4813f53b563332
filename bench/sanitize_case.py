"""Small calls of every CUDA op for compute-sanitizer: sparse_attn / sparse_attn_fp8 with partial
blocks, a short sequence tail, empty and full rows and per-sample block lengths; the drafting
ops and the fused fp8 layout pass on a grid with partial regions and text."""
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
per_sample = block_lens.view(1, -1).clone()
per_sample[0, 2] = 0
da.sparse_attn(q, k, v, kv_indices, kv_counts, per_sample)

layout = da.VideoLayout(2, 20, 36, text_len=50)
qv, kv, vv = (torch.randn(1, layout.tokens, heads, 128, generator=generator).cuda().bfloat16() for _ in range(3))
for rule in ("global", "topk", "topp"):
    da.draft_attention(qv, kv, vv, layout, sparsity=0.7, rule=rule)
da.draft_attention(qv, kv, vv, layout, sparsity=0.7, precision="fp8")
torch.cuda.synchronize()
print("sanitize case ran")
