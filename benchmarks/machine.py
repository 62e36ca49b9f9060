"""Facts about the machine a benchmark ran on, shared by the benchmark scripts."""
from __future__ import annotations


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('?' where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "?"


def torch_or_none(quick: bool):
    """PyTorch for the baseline; None in a --quick run without it (the engine alone is timed);
    a full run without it exits with the install command."""
    try:
        import torch
    except ImportError:
        if not quick:
            raise SystemExit("the torch baseline needs PyTorch CPU: "
                             ".venv/bin/pip install torch==2.13.0 (or run --quick)")
        return None
    return torch
