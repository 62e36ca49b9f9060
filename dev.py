#!/usr/bin/env python3
"""Set-up and everyday tasks, with nothing but Python 3.11 on the machine.

    python3 dev.py demo    # create .venv, install twolayer, reproduce a small preset, draw it
    python3 dev.py test    # create .venv, install twolayer with test extras, run the tests
    python3 dev.py bench   # install the benchmark extras (CPU PyTorch) and run the benchmarks
    python3 dev.py docs    # build the documentation site into site/ (``docs serve`` to browse)
    python3 dev.py gallery # run every preset at full scale and rewrite docs/gallery.md (~40 min)

Extra arguments after ``test`` go to pytest (``python3 dev.py test -m slow``)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def sh(*cmd):
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def ensure(extras: str) -> None:
    """Create the virtual environment and install the package once per pyproject change."""
    if sys.version_info < (3, 11):
        sys.exit("twolayer needs Python >= 3.11")
    if not (BIN / "python").exists():
        sh(sys.executable, "-m", "venv", VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    spec = f".[{extras}]" if extras else "."
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "-e", spec)
    stamp.write_text(digest)


# what `demo` runs (tests/test_doc_commands.py runs it too, at tiny scale)
DEMO = ["reproduce", "fig4", "--scale", "quick", "--out", "runs/fig4-quick"]


def main(argv):
    task, rest = (argv[0], argv[1:]) if argv else ("demo", [])
    if task == "demo":
        ensure("")
        sh(BIN / "twolayer", *DEMO, *rest)
    elif task == "test":
        ensure("test")
        sh(BIN / "python", "-m", "pytest", "-q", *rest)
    elif task == "bench":
        ensure("test,bench")
        for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
            sh(BIN / "python", script, *rest)
    elif task == "docs":
        ensure("docs")
        sh(BIN / "mkdocs", *(rest or ["build", "--strict"]))
    elif task == "gallery":
        ensure("")
        sh(BIN / "python", ROOT / "scripts" / "gallery.py", *rest)
    else:
        sys.exit(f"unknown task '{task}'; allowed: demo, test, bench, docs, gallery")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except subprocess.CalledProcessError as err:
        sys.exit(err.returncode)
