"""DraftProcessor: what every model family's self-attention processor shares."""
from ..pipeline import draft_attention, draft_attention_regions
from .region_major import zero_padding_rows


class DraftProcessor:
    """A replacement self-attention processor of one layer.

    Per-layer permutation (the default): dense calls (the dense steps, and layers in the dense
    set when a processor is installed there) and calls with an attention mask the family does
    not understand go to the layer's original processor, the stock path. With
    DraftConfig.permute_once the sequence is in region-major order, which the stock processor
    cannot read, so every call runs here and dense calls keep all blocks.
    Subclasses implement __call__ with the model's projections and call `attend`.
    """

    # Read by diffusers' attention-backend and context-parallel plumbing on any processor.
    _attention_backend = None
    _parallel_config = None

    def __init__(self, state, layer, original):
        self.state = state
        self.layer = layer
        self.original = original

    def runs_dense(self):
        return self.layer in self.state.dense_layers or self.state.in_dense_step()

    def uses_stock_path(self, unsupported_mask=False):
        if not self.state.region_major:
            return unsupported_mask or self.runs_dense()
        if unsupported_mask:
            raise ValueError(f"DraftConfig.permute_once: self-attention layer {self.layer} got an attention mask "
                             f"that {self.state.family.name}'s draft processor cannot express, and the stock "
                             "processor cannot run on region-major tokens")
        return False

    def video_start(self, text_len, text_first):
        """First row of the video tokens in this call's sequence (text first is padded to whole blocks
        in region-major order)."""
        if not text_first:
            return 0
        return -(-text_len // 128) * 128 if self.state.region_major else text_len

    def attend(self, q, k, v, text_len=0, text_first=False, text_lens=None, padding_rows_zero=True):
        """Draft attention on (batch, tokens, heads, head_dim) q, k, v in the order the blocks use;
        records the kept density of sparse calls. padding_rows_zero: whether q and k are already zero
        on region-major padding rows (true after a rotary table permuted by the hooks)."""
        state, config = self.state, self.state.config
        layout = state.attention_layout(q.shape[1], text_len, text_first)
        options = dict(sparsity=config.sparsity, rule=config.rule, top_p=config.top_p, precision=config.precision,
                       text_lens=text_lens)
        if not state.region_major:
            out, stats = draft_attention(q, k, v, layout, return_stats=True, **options)
        else:
            if not padding_rows_zero:
                start = self.video_start(text_len, text_first)
                q, k = (zero_padding_rows(t, state.video_layout(), start) for t in (q, k))
            if self.runs_dense():
                return draft_attention_regions(q, k, v, layout, dense=True, **options)
            out, stats = draft_attention_regions(q, k, v, layout, return_stats=True, **options)
        state.stats.record(state.step, self.layer, stats["density"])
        return out
