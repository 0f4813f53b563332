"""One fidelity case: every selection method at every density on one set of inputs."""
import torch

from .blocks import block_budget, forced_blocks, keep_top
from .draft_rules import DRAFT_RULES, draft_keep
from .inputs import video_qkv
from .metrics import dense_reference, mass_recall, mean_cosine, relative_l2, sparse_output, token_pair_density
from .static_masks import local_window_scores, radial_scores, random_keep, static_keep

METHODS = ("global", "topk", "topp", "oracle", "local", "radial", "random")


def select_blocks(method, budget, layout, q_pooled, k_pooled, true_block_mass, generator):
    """(1, heads, nb, nb) keep mask of `method` with `budget` blocks per head (as near as its rule allows)."""
    heads, device = q_pooled.shape[1], q_pooled.device
    if method in DRAFT_RULES:
        return draft_keep(method, q_pooled, k_pooled, layout, budget)
    if method == "oracle":
        return keep_top(true_block_mass, forced_blocks(layout, device), budget)
    if method == "local":
        return static_keep(layout, local_window_scores(layout, device), heads, budget)
    if method == "radial":
        return static_keep(layout, radial_scores(layout, device), heads, budget)
    if method == "random":
        return random_keep(layout, heads, budget, generator, device)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def evaluate_case(layout, heads, head_dim, scene, sharpness, seed, densities, methods=METHODS, device="cpu"):
    """Rows of metrics, one per (method, target density); inputs, selection and sparse_attn run on `device`."""
    q, k, v = video_qkv(layout, heads, head_dim, scene=scene, sharpness=sharpness, seed=seed, device=device)
    dense_out, true_block_mass = dense_reference(q, k, v, layout)
    q_pooled = torch.ops.draftattn.mean_pool(q, *layout.op_args)
    k_pooled = torch.ops.draftattn.mean_pool(k, *layout.op_args)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for target in densities:
        budget = block_budget(layout, target)
        for method in methods:
            keep = select_blocks(method, budget, layout, q_pooled, k_pooled, true_block_mass, generator)
            out = sparse_output(q, k, v, keep, layout)
            rows.append({"scene": scene, "sharpness": sharpness, "seed": seed, "method": method,
                         "target_density": target, "budget_blocks": budget,
                         "kept_blocks": keep.sum((-1, -2)).float().mean().item(),
                         "density": token_pair_density(keep, layout),
                         "recall": mass_recall(true_block_mass, keep, layout),
                         "rel_l2": relative_l2(out, dense_out), "cosine": mean_cosine(out, dense_out)})
    return rows
