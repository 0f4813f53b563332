"""DraftProcessor: what every model family's self-attention processor shares."""
from ..pipeline import draft_attention


class DraftProcessor:
    """A replacement self-attention processor of one layer.

    It falls back to the layer's original processor (the stock dense path) during the dense
    steps and whenever an attention mask is given (draft attention has no token mask).
    Subclasses implement __call__ with the model's projections and call `attend`.
    """

    # Read by diffusers' attention-backend and context-parallel plumbing on any processor.
    _attention_backend = None
    _parallel_config = None

    def __init__(self, state, layer, original):
        self.state = state
        self.layer = layer
        self.original = original

    def runs_dense(self, attention_mask):
        return attention_mask is not None or self.state.in_dense_step()

    def attend(self, q, k, v, layout):
        """draft_attention on (batch, tokens, heads, head_dim) q, k, v; records the kept density."""
        config = self.state.config
        out, stats = draft_attention(q, k, v, layout, sparsity=config.sparsity, rule=config.rule, top_p=config.top_p,
                                     return_stats=True, precision=config.precision)
        self.state.stats.record(self.state.step, self.layer, stats["density"])
        return out
