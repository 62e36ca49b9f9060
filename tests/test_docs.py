"""The documentation site builds with warnings as errors, and the gallery is complete and
made by its script."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twolayer import presets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gallery  # noqa: E402


def test_site_builds_strict(tmp_path):
    """Broken links, missing anchors, pages left out of the nav, docstrings mkdocstrings
    cannot parse, a recorded variable without a description: each fails the build."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    html = {p: (tmp_path / "site" / p / "index.html").read_text()
            for p in ("cli", "api", "concepts", "single_neuron", "patch_cnn", "gallery")}
    # the generated parts are there: every command, every option, every variable
    for cmd in ("run", "sweep", "reproduce", "plot", "info", "presets"):
        assert f"twolayer {cmd}" in html["cli"]
    assert "--executor" in html["cli"] and "--state-every" in html["cli"]
    for family, fields in (("single_neuron", ["init_scale", "imbalance", "recovery_threshold"]),
                           ("patch_cnn", ["output_init_scale", "parameterization", "snr"])):
        for f in fields:
            assert f"<code>{f}</code>" in html[family], (family, f)
    for var in ("imbalance_ratio", "neuron_size", "noise_memorization", "layer_ratio_filter",
                "signal_coeff", "stop_step", "converged"):
        assert f"<code>{var}</code>" in html["concepts"], var
    assert "twolayer.api.sweep" in html["api"] or "twolayer.sweep" in html["api"]
    for name in presets.names():
        assert f'id="{name}"' in html["gallery"], name


def test_gallery_covers_every_preset_at_full_scale():
    """The committed gallery: every preset has notes (paper / observe / differ), a timing of
    its full-scale command, and its figures in the page."""
    timings = json.loads((ROOT / "docs" / "gallery" / "timings.json").read_text())
    page = (ROOT / "docs" / "gallery.md").read_text()
    for name in presets.names():
        note = (ROOT / "docs" / "gallery" / "notes" / f"{name}.md").read_text()
        assert all(h in note for h in gallery.NOTE_HEADINGS), name
        t = timings[name]
        assert t["command"] == f"twolayer reproduce {name} --scale full --out runs/gallery/{name}-full"
        assert t["wall_s"] > 0 and t["machine"]
        assert f"## {name}\n" in page and t["command"] in page
        figures = re.findall(rf"\]\((gallery/figures/{re.escape(name)}--[\w.-]+\.png)\)", page)
        assert figures and all((ROOT / "docs" / f).exists() for f in figures), name
    assert set(timings) == set(presets.names())


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_gallery_script_runs_times_and_resumes(tmp_path, capsys):
    """At tiny scale on two presets: the page, figures and timings are written; a rerun
    trains nothing and keeps the timings; a missing note is refused."""
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    shutil.copytree(ROOT / "docs" / "gallery" / "notes", docs / "gallery" / "notes")
    args = ["--scale", "tiny", "--only", "fig2,kou2023-demo", "--runs", str(runs),
            "--docs", str(docs)]
    assert gallery.main(args) == 0
    page = (docs / "gallery-tiny.md").read_text()
    timings = json.loads((docs / "gallery" / "timings-tiny.json").read_text())
    assert set(timings) == {"fig2", "kou2023-demo"}
    for name in timings:
        assert f"## {name}\n" in page
        assert timings[name]["cpu_s"] > 0 and timings[name]["wall_s"] > 0
        assert (runs / f"{name}-tiny" / "result.nc").exists()
    assert (docs / "gallery" / "figures-tiny" / "fig2--fig2.png").stat().st_size > 10_000
    assert not (docs / "gallery.md").exists()  # a small scale never replaces the full page
    capsys.readouterr()
    assert gallery.main(args) == 0
    assert capsys.readouterr().out.count("done before") == 2
    assert json.loads((docs / "gallery" / "timings-tiny.json").read_text()) == timings
    (docs / "gallery" / "notes" / "fig2.md").unlink()
    with pytest.raises(SystemExit, match="no notes for preset fig2"):
        gallery.main(args + ["--render-only"])
