"""Bad inputs raise errors that name the argument and what is accepted."""
import pytest
import torch

import draftattn_cuda as da

OPS = torch.ops.draftattn


def valid_args(tokens=256, heads=2, head_dim=64, dtype=torch.bfloat16):
    q, k, v = (torch.randn(1, tokens, heads, head_dim).to(dtype) for _ in range(3))
    nb = (tokens + 127) // 128
    kv_indices = torch.arange(nb, dtype=torch.int32).expand(1, heads, nb, nb).contiguous()
    kv_counts = torch.full((1, heads, nb), nb, dtype=torch.int32)
    return dict(q=q, k=k, v=v, kv_indices=kv_indices, kv_counts=kv_counts)


def replaced(**changes):
    args = valid_args()
    args.update(changes)
    return args


BAD_METADATA = [
    (lambda a: {"q": a["q"].float()}, "q must be float16 or bfloat16"),
    (lambda a: {"k": a["k"].half()}, "k must .*dtype"),
    (lambda a: {"v": a["v"][:, :128]}, "v must have the shape of q"),
    (lambda a: {"q": a["q"][..., :32], "k": a["k"][..., :32], "v": a["v"][..., :32]}, "head_dim .* must be 64 or 128"),
    (lambda a: {"q": a["q"][0]}, "q must be 4-D"),
    (lambda a: {"kv_indices": a["kv_indices"].long()}, "kv_indices must be int32"),
    (lambda a: {"kv_indices": a["kv_indices"][:, :1]}, "kv_indices must have shape"),
    (lambda a: {"kv_counts": a["kv_counts"].float()}, "kv_counts must be int32"),
    (lambda a: {"kv_counts": a["kv_counts"][..., :1]}, "kv_counts must have shape"),
    (lambda a: {"block_lens": torch.full((5,), 128, dtype=torch.int32)}, "block_lens must have shape"),
    (lambda a: {"block_lens": torch.full((3, 2), 128, dtype=torch.int32)}, "block_lens must have shape"),
    (lambda a: {"scale": -1.0}, "scale must be a finite positive number"),
]


@pytest.mark.parametrize("change,message", BAD_METADATA, ids=[m for _, m in BAD_METADATA])
def test_wrapper_and_op_name_the_bad_argument(change, message):
    args = replaced(**change(valid_args()))
    with pytest.raises(ValueError, match=message):
        da.sparse_attn(**args)
    with pytest.raises(RuntimeError, match=message):
        OPS.sparse_attn(**args)


def test_strided_head_dim_is_rejected():
    q = torch.randn(1, 256, 2, 128).to(torch.bfloat16)[..., ::2]
    args = replaced(q=q, k=q, v=q)
    with pytest.raises(ValueError, match="contiguous in the last dim"):
        da.sparse_attn(**args)
    with pytest.raises(RuntimeError, match="contiguous in the last dim"):
        OPS.sparse_attn(**args)


BAD_VALUES = [
    (lambda a: {"kv_counts": a["kv_counts"] + 1}, "kv_counts entries must be in"),
    (lambda a: {"kv_indices": a["kv_indices"] + 1}, "kv_indices entries .* must be in"),
    (lambda a: {"kv_indices": a["kv_indices"].flip(-1).contiguous()}, "strictly ascending"),
    (lambda a: {"block_lens": torch.tensor([128, -1], dtype=torch.int32)}, "block_lens entries must be in"),
    (lambda a: {"block_lens": torch.tensor([[128, 129]], dtype=torch.int32)}, "block_lens entries must be in"),
]


@pytest.mark.parametrize("change,message", BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_block_list_values_are_checked(change, message):
    args = replaced(**change(valid_args()))
    with pytest.raises(RuntimeError, match=message):
        OPS.sparse_attn(**args)
    lists = {name: args[name] for name in ("kv_indices", "kv_counts") if name in args}
    with pytest.raises(ValueError, match=message):
        da.validate_block_lists(lists["kv_indices"], lists["kv_counts"], args.get("block_lens"), tokens=256)


def test_last_block_len_must_fit_the_tokens():
    args = valid_args(tokens=200)
    with pytest.raises(RuntimeError, match="block_lens of the last block"):
        OPS.sparse_attn(**args, block_lens=torch.tensor([128, 100], dtype=torch.int32))


def test_layout_ops_name_the_bad_argument():
    x = torch.randn(1, 2 * 16 * 32, 2, 64)
    with pytest.raises(RuntimeError, match="region_h \\* region_w must equal"):
        OPS.to_regions(x, 2, 16, 32, 8, 8, 0, False)
    with pytest.raises(RuntimeError, match="x has 1024 tokens but the layout needs 1100"):
        OPS.mean_pool(x, 2, 16, 32, 8, 16, 76, False)
    with pytest.raises(RuntimeError, match="x must be float16, bfloat16 or float32"):
        OPS.to_regions(x.int(), 2, 16, 32, 8, 16, 0, False)
    with pytest.raises(RuntimeError, match="padded region-major"):
        OPS.from_regions(x[:, :1000], 2, 16, 32, 8, 16, 0, False)
    with pytest.raises(ValueError, match="region must be"):
        da.VideoLayout(2, 16, 32, region=(8, 8))
    with pytest.raises(ValueError, match="height must be"):
        da.VideoLayout(2, 0, 32)


def test_draft_select_names_the_bad_argument():
    pooled = torch.randn(1, 2, 6, 64)
    cases = [
        (dict(rule="top3"), "rule must be 'global', 'topk' or 'topp'"),
        (dict(sparsity=1.5), "sparsity must be in \\[0, 1\\]"),
        (dict(top_p=0.0), "top_p must be in \\(0, 1\\]"),
        (dict(q_pooled=pooled.double()), "q_pooled must be float32"),
        (dict(k_pooled=pooled[:, :1]), "k_pooled must have the shape of q_pooled"),
    ]
    for change, message in cases:
        args = dict(q_pooled=pooled, k_pooled=pooled, rule="global", sparsity=0.5, top_p=0.9,
                    text_blocks=0, text_first=False)
        args.update(change)
        with pytest.raises(RuntimeError, match=message):
            OPS.draft_select(**args)
