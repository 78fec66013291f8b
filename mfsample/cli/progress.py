"""Progress of ``mfsample run`` on standard error: a bar, a line per checkpoint, or nothing."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["Progress", "progress_mode"]


def progress_mode(mode: str, console) -> str:
    """``"auto"`` made concrete: a bar on a terminal, a line per checkpoint otherwise."""
    if mode != "auto":
        return mode
    return "bar" if getattr(console, "isatty", lambda: False)() else "lines"


class Progress:
    """A tqdm bar (``mode="bar"``) showing the latest value per key (the energy per width), or one
    line per checkpoint (``"lines"``), or nothing (``"off"``)."""

    def __init__(self, total: int, mode: str, console=None, desc: str = "mfsample run"):
        self.mode, self.console = mode, console or sys.stderr
        self.values: dict[str, float] = {}
        self.bar = tqdm(total=total, desc=desc, file=self.console, dynamic_ncols=True) if mode == "bar" else None

    def advance(self, steps: int):
        if self.bar is not None:
            self.bar.update(steps)

    def report(self, key: str, value: float, line: str, steps: int = 0):
        """Record ``key = value`` (shown on the bar) after ``steps`` more steps; ``line`` in line mode."""
        self.values[key] = value
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(" ".join(f"{k}={v:.5g}" for k, v in self.values.items()))
        elif self.mode == "lines":
            print(line, file=self.console, flush=True)

    def message(self, text: str):
        if self.bar is not None:
            self.bar.write(text, file=self.console)
        elif self.mode != "off":
            print(text, file=self.console, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
