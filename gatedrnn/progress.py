"""A progress bar for the terminal that degrades to a few plain lines in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start_step: int = 0, stream=None, width: int = 28):
        self.total, self.start_step, self.width = total, start_step, width
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.started = time.time()
        self.last_line = -1

    def update(self, step: int, **fields) -> None:
        done = step / self.total
        elapsed = time.time() - self.started
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else float("nan")
        bar = "#" * int(self.width * done) + "-" * (self.width - int(self.width * done))
        info = "  ".join(f"{k} {v}" for k, v in fields.items())
        line = f"[{bar}] {step}/{self.total}  {info}  {elapsed:.0f}s, {left:.0f}s left"
        if self.tty:
            self.stream.write("\r" + line + " ")
        else:   # a log gets one line per tenth of the run
            tenth = int(10 * done)
            if tenth == self.last_line:
                return
            self.last_line = tenth
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
