"""What a sweep tells while it runs: one progress display for the whole sweep, and log lines.

**The display** (a terminal or a Jupyter notebook; ``progress=True`` forces it,
``progress=False`` or ``TWOLAYER_PROGRESS=0`` turns it off) is one bar over the sweep's runs,
kept on screen when the sweep ends::

    sweep fig4: 42%|████▏     | 84/200 runs · shards 2/5 · 40 active · 00:31 elapsed · ETA 00:43

In Jupyter it is a widget (``tqdm.auto``; ``pip install 'twolayer[notebook]'`` brings
ipywidgets). **Piped** (a log file, a batch job), there is no bar: a plain line after each
shard and, during a long shard, every ``LINE_EVERY`` seconds.

**How the ETA is computed** (our choice): a run counts as done when it stops, early
(converged, diverged) or at its budget, and a run still training counts by the fraction of
its step budget it has done (under gradient flow, whose time steps grow, a run counts only
when it stops). The clock starts when the first shard trained by this sweep returns its
first chunk of steps, i.e. after its compilation; the ETA is the work left divided by the
work done per second since then. So early stopping shortens it as soon as runs stop, a
first compilation does not inflate it, and the compilation of later groups (other static
settings) is averaged in. Shards finished by an earlier run of the sweep are counted as
done and left out of the rate. Executors other than ``local`` report only finished shards:
their ETA is measured from the first finished shard on.

**Log lines** go through Python's ``logging`` (logger ``"twolayer"``): written to stderr as
plain lines at level INFO, by a handler twolayer adds to that logger when it has none
(``ensure_handler``); ``twolayer -q`` shows warnings only (and no bar), ``-v`` adds debug
lines. From Python, silence them with ``logging.getLogger("twolayer").setLevel(
logging.WARNING)``, or route them through your own set-up by giving the logger your handler
(or ``propagate = True`` and no handler) before the first sweep.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

log = logging.getLogger("twolayer")
LINE_EVERY = 60.0  # seconds between the plain progress lines of a long shard (no bar)
REFRESH = 0.2  # seconds between redraws of the bar
BAR = "{desc}: {percentage:3.0f}%|{bar}| "  # then the display's text


class StderrHandler(logging.StreamHandler):
    """Plain lines (the message alone) on whatever ``sys.stderr`` is at the time of writing
    (a notebook or a test may replace it)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler sets it; the current sys.stderr is used instead
        pass


def ensure_handler() -> None:
    """Unless the ``"twolayer"`` logger has handlers already, send its messages to stderr as
    plain lines, at INFO unless a level was set, and not on to the root logger (so that an
    application's own logging set-up neither hides nor doubles them)."""
    if log.handlers:
        return
    log.addHandler(StderrHandler())
    log.propagate = False
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def in_notebook() -> bool:
    """Running in a Jupyter kernel (where stderr is no terminal but a bar is wanted)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001 - an IPython without a running shell
        return False
    return ip is not None and hasattr(ip, "kernel")


def wanted(flag=None) -> bool:
    """Show a progress bar? ``flag`` (True/False) decides; None: on a terminal or in a
    notebook, unless ``TWOLAYER_PROGRESS=0``."""
    if flag is not None:
        return bool(flag)
    if os.environ.get("TWOLAYER_PROGRESS", "1") == "0":
        return False
    return sys.stderr.isatty() or in_notebook()


def clock(seconds: float) -> str:
    """00:42, 12:03, 1:02:03."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _tqdm():
    """tqdm.auto's bar (a widget in Jupyter when ipywidgets is installed), else the text bar
    (no warning about the missing widget)."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm
            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm
    return tqdm


def bar(total: int, desc: str, unit: str, leave: bool = False):
    """A tqdm bar on stderr (the engine's bar for one run)."""
    return _tqdm()(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)


class SweepProgress:
    """The progress of one sweep (see the module docstring): ``skipped`` / ``started`` /
    ``update`` / ``finished`` per shard, ``close`` at the end. ``reporter(i)`` is the
    callable the engine calls between chunks of shard ``i``: ``(runs done, runs active)``,
    runs done counting fractions of runs."""

    def __init__(self, name: str, n_shards: int, n_runs: int, show: bool = False,
                 now=time.monotonic):
        self.name, self.n_shards, self.n_runs, self.now = name, n_shards, n_runs, now
        self.t0 = now()
        self.shards_done = self.runs_done = self.runs_skipped = 0
        self.partial: dict[int, float] = {}  # shard -> runs done in it so far
        self.active: dict[int, int] = {}  # shard -> runs still training
        self.start: tuple[float, float] | None = None  # (time, work) when the rate clock started
        self.compiling = False
        self.last_draw, self.last_line = -1e300, self.t0  # plain lines: after LINE_EVERY
        self.bar = None
        if show:
            self.bar = _tqdm()(total=n_runs, desc=f"sweep {name}", leave=True,
                               dynamic_ncols=True, bar_format=BAR)
            self._draw(force=True)

    # ---------------------------------------------------------------- state
    def work(self) -> float:
        """Runs done (fractions included), this sweep's and earlier runs'."""
        return self.runs_done + sum(self.partial.values())

    def eta(self) -> float | None:
        """Seconds left at the rate measured since the clock started; None before."""
        if self.start is None:
            return None
        t, w = self.start
        dt, dw = self.now() - t, self.work() - w
        if dt <= 0 or dw <= 0:
            return None
        return max(self.n_runs - self.work(), 0.0) * dt / dw

    def text(self) -> str:
        """The display's line, without the bar: runs, shards, active, elapsed, ETA."""
        parts = [f"{self.work():.0f}/{self.n_runs} runs",
                 f"shards {self.shards_done}/{self.n_shards}"]
        active = sum(self.active.values())
        if active:
            parts.append(f"{active} active")
        parts.append(f"{clock(self.now() - self.t0)} elapsed")
        eta = self.eta()
        if self.compiling and self.start is None:
            parts.append("compiling")
        elif eta is not None and self.shards_done < self.n_shards:
            parts.append(f"ETA {clock(eta)}")
        return " · ".join(parts)

    def _draw(self, force=False) -> None:
        t = self.now()
        if self.bar is not None:
            if force or t - self.last_draw >= REFRESH:
                self.bar.n = min(self.work(), self.n_runs)
                text = self.text().replace("{", "{{").replace("}", "}}")
                self.bar.bar_format = BAR + text
                self.bar.refresh()
                self.last_draw = t
        elif force or t - self.last_line >= LINE_EVERY:
            log.info(f"sweep {self.name}: {self.text()}")
            self.last_line = t

    # ---------------------------------------------------------------- events
    def skipped(self, runs: int) -> None:
        """A shard finished before this run of the sweep (read back, not trained)."""
        self.shards_done += 1
        self.runs_done += runs
        self.runs_skipped += runs
        self._draw()

    def started(self, i: int, runs: int) -> None:
        """Shard ``i`` starts training in this process (its program may compile first)."""
        self.partial[i], self.active[i] = 0.0, runs
        self.compiling = True
        if self.bar is not None:  # piped: the shard's own line says it started
            self._draw(force=True)

    def update(self, i: int, done: float, active: int) -> None:
        """Between chunks of shard ``i``: ``done`` runs (fractions included), ``active``."""
        self.partial[i], self.active[i] = float(done), int(active)
        if self.start is None:  # the first chunk is back: compiled; the rate clock starts
            self.start = (self.now(), self.work())  # (the work of this chunk is not counted)
        self.compiling = False
        self._draw()
        log.debug(f"shard {i + 1}/{self.n_shards}: {done:.1f} runs done, {active} active")

    def finished(self, i: int, runs: int) -> None:
        """Shard ``i`` is done (trained here or by a worker)."""
        self.partial.pop(i, None)
        self.active.pop(i, None)
        self.shards_done += 1
        self.runs_done += runs
        if self.start is None:  # a worker's shard (no chunks seen): the clock starts now
            self.start = (self.now(), self.work())
        self._draw(force=True)

    def reporter(self, i: int):
        return lambda done, active: self.update(i, done, active)

    @contextlib.contextmanager
    def shown(self):
        """While the bar is on a terminal, log lines are written above it."""
        if self.bar is None or in_notebook():
            yield self
            return
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(loggers=[log]):
            yield self

    def close(self) -> None:
        if self.bar is not None:
            self._draw(force=True)
            self.bar.close()
            self.bar = None
