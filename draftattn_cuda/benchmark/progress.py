"""A small progress bar on stderr, so that stdout keeps only results."""
import sys
import time


class Progress:
    """`with Progress(total) as bar: bar.step("label")` before each case.

    On a terminal the bar redraws in place; otherwise (a log file, CI) it prints one line per case.
    """

    def __init__(self, total, stream=None, width=24):
        self.total, self.width, self.done = total, width, 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.start = time.perf_counter()

    def step(self, label):
        self.done += 1
        filled = self.width * (self.done - 1) // max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {elapsed:6.1f}s {label}"
        if self.live:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.live:
            self.stream.write("\n")
        self.stream.write(f"{self.done}/{self.total} cases in {time.perf_counter() - self.start:.1f} s\n")
        self.stream.flush()
