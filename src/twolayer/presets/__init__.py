"""The studies' figures as sweep specs (TOML data, not code), each with scales
``full`` (the study's budgets), ``quick`` (smaller grids and budgets, same figure) and
``tiny`` (seconds; what the tests run)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def path(name: str) -> Path:
    return HERE / f"{name}.toml"
