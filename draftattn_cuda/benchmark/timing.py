"""Median time of a callable after warm-up: CUDA events on a GPU, perf_counter on the CPU."""
import math
import statistics
import time

import torch

# Bytes zeroed between GPU repetitions so no repetition finds the previous one's data in L2.
L2_FLUSH_BYTES = 256 << 20
MAX_REPS = 1000


class Timer:
    """median_ms(fn): one untimed first call (compilation, lazy set-up), one call to estimate the time,
    then warm-up calls up to `warmup_ms` in all and enough timed calls to fill `rep_ms`, at least
    `min_reps` (at most 1000). With `cuda_graphs`, callables marked graphable are captured once and replayed."""

    def __init__(self, device, warmup_ms=25.0, rep_ms=100.0, min_reps=5, cuda_graphs=False):
        self.cuda = torch.device(device).type == "cuda"
        self.warmup_ms, self.rep_ms, self.min_reps = warmup_ms, rep_ms, min_reps
        self.cuda_graphs = cuda_graphs and self.cuda
        self.flush_buffer = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device) if self.cuda else None

    def median_ms(self, fn, graphable=False):
        if self.cuda_graphs and graphable:
            fn = self.graphed(fn)
        fn()
        estimate = max(self._time_calls(fn, 1), 1e-3)  # also the first warm-up call
        for _ in range(math.ceil(self.warmup_ms / estimate) - 1):
            fn()
        reps = min(MAX_REPS, max(self.min_reps, math.ceil(self.rep_ms / estimate)))
        return statistics.median(self._each_call_ms(fn, reps))

    def graphed(self, fn):
        """fn captured in a CUDA graph (replayed without launch overhead), or fn itself if capture fails."""
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # allocations of the first calls stay out of the capture
                fn()
                fn()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            return graph.replay
        except RuntimeError as error:
            print(f"  CUDA graph capture failed ({str(error).splitlines()[0]}): timing plain calls")
            return fn

    def _time_calls(self, fn, count):
        if not self.cuda:
            start = time.perf_counter()
            for _ in range(count):
                fn()
            return (time.perf_counter() - start) * 1e3
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(count):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def _each_call_ms(self, fn, reps):
        if not self.cuda:
            return [self._time_calls(fn, 1) for _ in range(reps)]
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            self.flush_buffer.zero_()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]
