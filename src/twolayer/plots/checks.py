"""Checks of ``[[figure]]`` tables made when a sweep is read, before any training: what
``draw_all`` would otherwise find out only after the sweep (kinds, dims, file names, dpi)."""
from __future__ import annotations

from ..config import ConfigError, check_name

DIM_KEYS = ("x", "panel", "hue", "points")  # keys that name a dim, in every kind
MAX_DPI = 2400


def _formats() -> set[str]:
    from matplotlib.figure import Figure

    return set(Figure().canvas.get_supported_filetypes())


def check_figures(family, dims, specs, kinds) -> None:
    """Refuse a figure table with an unknown ``kind`` (``kinds``: the generic ones and the
    family's), a dim key (``x``, ``panel``, ``hue``, ``points``, ``over``; heatmap's ``y``)
    naming no dim of the result (``dims``: the axes' dims, the family's variable dims, the
    checkpoint dims), an overlay the family does not give, a ``file`` that is not a plain
    file name of a known format (or that two figures share), or a ``dpi`` that is not a
    number in (0, 2400]. Messages name the figure (1-based) and are one line."""
    from ..analysis import CHECKPOINT_DIMS

    if specs is None:
        return
    if isinstance(specs, dict):
        specs = [specs]
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ConfigError("[[figure]] must be tables (kind = ..., file = ...)")
    dims = list(dims)
    own = {d for v in family.variables for d in v.dims}  # the family's dims (e.g. neuron)
    known = set(dims) | set(CHECKPOINT_DIMS) | own
    files = set()
    for i, spec in enumerate(specs, 1):
        where = f"figure {i}"
        kind = spec.get("kind", "error_vs")
        if not isinstance(kind, str) or kind not in kinds:
            raise ConfigError(f"{where}: unknown kind {kind!r} for family '{family.name}'; "
                              f"allowed: {', '.join(kinds)}")
        where = f"figure {i} ({kind})"
        swept = [d for d in dims if d not in own and d not in CHECKPOINT_DIMS]
        if kind == "heatmap":
            for key in ("x", "y"):
                if key not in spec:
                    raise ConfigError(f"{where}: needs '{key}' (a dim of the result)")
        if kind == "error_vs" and not spec.get("x") and not swept:
            raise ConfigError(f"{where}: needs a swept dim on x, and the sweep has no axes "
                              f"(without [[figure]] tables it draws its run's figure)")
        keys = list(DIM_KEYS) + (["y"] if kind == "heatmap" else [])
        for key in keys:
            value = spec.get(key)
            if value is not None and (not isinstance(value, str) or value not in known):
                raise ConfigError(f"{where}: {key} = {value!r} is not a dim of the result; "
                                  f"dims: {', '.join(sorted(known))}")
        over = spec.get("over")
        for value in ([over] if isinstance(over, str) else over or []):
            if not isinstance(value, str) or value not in known:
                raise ConfigError(f"{where}: over = {over!r} names no dim of the result; "
                                  f"dims: {', '.join(sorted(known))}")
        for ov in spec.get("overlays", []) or []:
            name = ov if isinstance(ov, str) else ov.get("name") if isinstance(ov, dict) else None
            if name not in family.overlays:
                raise ConfigError(f"{where}: unknown overlay {ov!r} for family "
                                  f"'{family.name}'; allowed: "
                                  f"{', '.join(sorted(family.overlays)) or 'none'}")
        if "file" in spec:
            name = check_name(f"{where}: 'file'", spec["file"])
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else "png"
            if ext not in _formats():
                raise ConfigError(f"{where}: file {name!r} has an unknown format '{ext}'; "
                                  f"allowed: {', '.join(sorted(_formats()))}")
            if name in files:
                raise ConfigError(f"{where}: file {name!r} is also another figure's file")
            files.add(name)
        if "dpi" in spec:
            dpi = spec["dpi"]
            if (isinstance(dpi, bool) or not isinstance(dpi, (int, float))
                    or not 0 < dpi <= MAX_DPI):
                raise ConfigError(f"{where}: 'dpi' must be a number in (0, {MAX_DPI}], "
                                  f"got {dpi!r}")
