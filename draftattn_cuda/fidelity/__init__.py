"""Fidelity harness: how much of exact dense attention each block-selection method keeps.

`python -m draftattn_cuda.fidelity` builds video-like q, k, v (inputs.py, rotary.py), selects
blocks with the draft rules, an oracle and static masks at equal density (draft_rules.py,
static_masks.py), runs sparse_attn and scores it against dense fp32 attention (metrics.py),
on the CPU reference or, with --device cuda, the GPU kernels (full model shapes).
"""
