"""Every command shown in the README and the quickstart runs, in an empty folder.

Rules, the same for both pages:
- a code block with a title (```toml title="my_sweep.toml") is a file: it is written first;
- every line of a ```bash block is a command, run as written, in page order; every
  ```python block is a script; ``twolayer ...`` lines go through ``twolayer.cli.main`` in
  this process (what the ``twolayer`` entry point calls; tests/test_cli.py runs the CLI
  as a subprocess), which saves a JAX start-up per line, and python blocks run in this process
  too; other lines run in bash;
- scales are made small: ``--scale quick|full`` and ``scale="quick"|"full"`` become tiny;
- the lines of SPECIAL are the set-up commands of dev.py: ``demo`` runs dev.DEMO (the
  command dev.py runs after installing), ``test`` is this suite itself, and activating the
  virtual environment is what running inside it already is;
- afterwards every result or figure path the page names (``runs/...png|nc``) exists.
"""
from __future__ import annotations

import importlib.util
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from twolayer import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/quickstart.md"]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def _dev():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SPECIAL = {
    "python3 dev.py demo": "twolayer " + " ".join(_dev().DEMO),
    "python3 dev.py test": None,
    ". .venv/bin/activate": None,
}


def small(text: str) -> str:
    text = re.sub(r"--scale (quick|full)\b", "--scale tiny", text)
    return re.sub(r"""scale=(["'])(quick|full)\1""", r'scale="tiny"', text)


def blocks(page: str):
    """(language, title, body) of each fenced block of a page, in order."""
    for lang, info, body in FENCE.findall((ROOT / page).read_text()):
        title = re.search(r'title="([^"]+)"', info)
        yield lang, title.group(1) if title else None, body


def commands(body: str):
    for line in body.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield line


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
@pytest.mark.parametrize("page", PAGES)
def test_every_command_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWOLAYER_PROGRESS", "0")
    monkeypatch.setenv("TWOLAYER_CACHE_DIR", "0")  # the suite's process compiles once anyway
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    found = list(blocks(page))
    for lang, title, body in found:
        if title:
            (tmp_path / title).write_text(body)
    ran, specials = [], set()
    for lang, title, body in found:
        if title:
            continue
        if lang == "bash":
            for line in commands(body):
                if line in SPECIAL:
                    specials.add(line)
                    if SPECIAL[line] is None:
                        continue
                    line = SPECIAL[line]
                if line.startswith("twolayer "):
                    code = cli.main(shlex.split(small(line))[1:])
                    assert code == 0, f"{page}: `{line}` exited with {code}"
                else:
                    run = subprocess.run(["bash", "-c", small(line)], cwd=tmp_path, env=env,
                                         capture_output=True, text=True, timeout=300)
                    assert run.returncode == 0, f"{page}: `{line}` failed:\n{run.stderr[-3000:]}"
                ran.append(line)
        elif lang == "python":
            script = tmp_path / f"block{len(ran)}.py"
            script.write_text(small(body))
            runpy.run_path(str(script), run_name="__main__")
            ran.append(script.name)
    assert len(ran) >= 5, f"{page}: only {ran} ran"
    assert "python3 dev.py demo" in specials, f"{page} does not show the demo command"
    text = (ROOT / page).read_text()
    named = set(re.findall(r"runs/[\w./-]+\.(?:png|nc)", text))
    missing = sorted(p for p in named if not (tmp_path / p).exists())
    assert not missing, f"{page} names files its commands did not make: {missing}"


def test_special_lines_are_what_dev_py_does():
    source = (ROOT / "dev.py").read_text()
    assert 'sh(BIN / "twolayer", *DEMO' in source  # demo runs exactly dev.DEMO
    # CI runs the README's test command, then the slow tests: nothing else
    runs = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
            if line and not line.startswith(("#", "set ", "cd "))]
    assert '"pytest"' in source and runs == ["python3 dev.py test", "python3 dev.py test -m slow"]
