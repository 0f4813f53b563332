"""DraftProcessor: what every model family's self-attention processor shares."""
from ..pipeline import draft_attention, draft_attention_regions
from .region_major import zero_padding_rows
from .ulysses import check_shard, gather_sequence, scatter_sequence, ulysses_group_of


class DraftProcessor:
    """A replacement self-attention processor of one layer.

    Per-layer permutation (the default): dense calls (the dense steps, and layers in the dense
    set when a processor is installed there) and calls with an attention mask the family does
    not understand go to the layer's original processor, the stock path. With
    DraftConfig.permute_once the sequence is in region-major order, which the stock processor
    cannot read, so every call runs here and dense calls keep all blocks.
    Subclasses implement __call__ with the model's projections and call `attend`.

    Under diffusers' Ulysses context parallelism (families with `context_parallel = True`) the
    sequence arrives in chunks: `attend` gathers it for this rank's heads and returns the chunk.
    """

    context_parallel = False
    # The family's reason when it sets context_parallel = False; shown in the error.
    context_parallel_refusal = ""

    def __init__(self, state, layer, original):
        self.state = state
        self.layer = layer
        self.original = original
        self._own_settings = {}

    # diffusers' set_attention_backend and enable_parallelism write these on whichever processor is
    # installed; they belong to the original, which runs the dense calls, so they are kept there.
    @property
    def _attention_backend(self):
        return self._original_setting("_attention_backend")

    @_attention_backend.setter
    def _attention_backend(self, value):
        self._set_original_setting("_attention_backend", value)

    @property
    def _parallel_config(self):
        return self._original_setting("_parallel_config")

    @_parallel_config.setter
    def _parallel_config(self, value):
        self._set_original_setting("_parallel_config", value)

    def _original_setting(self, name):
        if hasattr(self.original, name):
            return getattr(self.original, name)
        return self._own_settings.get(name)

    def _set_original_setting(self, name, value):
        if hasattr(self.original, name):
            setattr(self.original, name, value)
        else:
            self._own_settings[name] = value

    def runs_dense(self):
        return self.layer in self.state.dense_layers or self.state.in_dense_step()

    def ulysses(self):
        """This rank's UlyssesGroup under diffusers' context parallelism, else None; refuses what
        draft attention cannot run in parallel."""
        ulysses = ulysses_group_of(self._parallel_config)
        if ulysses is None:
            return None
        if not self.context_parallel:
            raise ValueError(f"draft attention does not support diffusers' context parallelism for "
                             f"{self.state.family.name}: {self.context_parallel_refusal}")
        if self.state.region_major:
            raise ValueError("DraftConfig.permute_once cannot run under diffusers' context parallelism (its hooks "
                             "reorder the whole sequence, which no rank holds); use permute_once=False")
        return ulysses

    def uses_stock_path(self, unsupported_mask=False):
        self.ulysses()  # refuses unsupported parallel setups on dense calls too
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
        on region-major padding rows (true after a rotary table permuted by the hooks). Under context
        parallelism q, k, v and the result are this rank's chunk of the tokens, and the recorded density
        covers this rank's heads only."""
        state, config = self.state, self.state.config
        ulysses = self.ulysses()
        if ulysses is not None:
            sizes = self._ulysses_split(ulysses, q, text_len)
            q, k, v = (gather_sequence(t, ulysses, sizes) for t in (q, k, v))
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
        return out if ulysses is None else scatter_sequence(out, ulysses, sizes)

    def _ulysses_split(self, ulysses, q, text_len):
        """Every rank's chunk size of the video sequence, checked against this rank's q."""
        if text_len:
            raise RuntimeError(f"{self.state.family.name}'s draft processor passed {text_len} text tokens under "
                               "context parallelism, which only video-only self-attention supports")
        return check_shard(ulysses, q.shape[1], self.state.video_layout().tokens, q.shape[2])
