"""What students get beside their notebooks: a README and a wheel of the package.

The wheel lets students ``pip install`` koopman_tut without cloning the repository, whose
``notebooks/`` hold the executed solutions; the README says how to install, how the check
cells answer, and (given the repository that will host the course) links to Binder and Colab.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from .files import write_atomic

WHEEL_TIMEOUT_S = 600
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest zip time: the same wheel, byte for byte, on every build

def project_root(notebooks: list[Path]) -> Path | None:
    """The source tree the notebooks come from (the folder above ``notebooks/`` holding a
    ``pyproject.toml``), or None."""
    for p in notebooks[:1]:
        root = Path(p).resolve().parent.parent
        if (root / "pyproject.toml").is_file() and (root / "koopman_tut").is_dir():
            return root
    return None


def build_wheel(root: Path, out_dir: Path, timeout: float = WHEEL_TIMEOUT_S) -> Path:
    """Build a wheel of the package in ``root`` into ``out_dir`` (pip, offline, no dependencies).

    The package files are copied to a temporary folder first, so the source tree gets no
    ``build/`` or ``*.egg-info`` folders; the wheel holds the package only (no notebooks), its
    files dated ``SOURCE_DATE_EPOCH`` so that two builds of one tree give the same bytes.
    """
    root, out_dir = Path(root), Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="koopman-tut-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "koopman_tut", src / "koopman_tut",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE-text.md"):
            if (root / name).is_file():
                shutil.copyfile(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--quiet", "--wheel-dir", str(Path(tmp) / "dist"), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH})
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"building the wheel took over {timeout:.0f} s and was stopped") from e
        wheels = sorted((Path(tmp) / "dist").glob("koopman_tut-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"pip wheel failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return write_atomic(out_dir / wheels[0].name, wheels[0].read_bytes())


OWNER = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")  # GitHub's rules for user and organisation names
REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^/|/$|\.$|^@$|(^|/)\.|\.lock(/|$)")


def valid_branch(name: str) -> bool:
    """Whether ``name`` is a branch name git accepts (``git check-ref-format --branch``'s rules:
    no space, control character, ``~ ^ : ? * [ \\``, ``..``, ``@{`` or ``//``; no component that starts
    with a dot or ends in ``.lock``; not starting or ending with ``/``, not ending with ``.``, not ``@``)."""
    return bool(name) and not name.startswith("-") and not _BAD_REF.search(name)


def launch_links(repo: str, name: str) -> tuple[str, str]:
    """(Binder, Colab) links that open ``name`` at the top of the GitHub repository ``repo``
    ("owner/name" or "owner/name@branch"): the repository the instructor makes of the course's
    ``student/`` folder, and of nothing else (the course folder also holds the solutions)."""
    slug, at, branch = repo.partition("@")
    owner, _, name_ = slug.partition("/")
    branch = branch if at else "main"
    if not (OWNER.fullmatch(owner) and REPO.fullmatch(name_) and name_ not in (".", "..") and valid_branch(branch)):
        raise ValueError(f"student_repo must be 'owner/name' or 'owner/name@branch' as GitHub and git spell them "
                         f"(owner and name: letters, digits, '-', '.', '_'; a branch git accepts), got {repo!r}")
    return (f"https://mybinder.org/v2/gh/{slug}/{quote(branch, safe='')}?labpath={quote(name)}",
            f"https://colab.research.google.com/github/{slug}/blob/{quote(branch)}/{quote(name)}")


README = """# Koopman-operator pruning: student notebooks

These notebooks teach how Koopman operator theory and Dynamic Mode Decomposition describe the
training of a neural network, and how to prune a network with its Koopman modes
(Redman et al., ICLR 2022). They contain every exercise and no solution.

## Install (once)

You need Python 3.10 or newer. In this folder:

    python -m venv .venv
    source .venv/bin/activate            # Windows: .venv\\Scripts\\activate
{install}
This installs the `koopman_tut` package with PyTorch, JupyterLab and everything the notebooks
use (PyTorch is a large download). Then open the notebooks:

    jupyter lab

## Work through the notebooks in order

| Notebook | Binder | Colab |
|---|---|---|
{rows}
{links_note}
On Colab, upload the wheel file and run `!pip install koopman_tut-*.whl` in the first cell.

## Exercises answer back

Each exercise ends in `answer = ...`. Replace the `...` with your answer and run the next
cell: it calls `check(...)` and prints **right**, or **not yet** with what is off and a hint.
It never shows the solution. "Predict first" prompts come before the cell that answers
them: write your prediction in the "Your prediction:" cell, then run the cell after it.

`SMOKE = True` in a notebook's parameters cell runs it at a tiny size (to check your
setup); the claims are only checked at full size.

Licence: code MIT, text CC BY 4.0.
"""


def student_readme(names: list[tuple[str, str]], wheel: str | None, student_repo: str | None = None) -> str:
    """The README of ``student/``: what is there, how to install and open it, how the checks answer.

    Parameters
    ----------
    names : list of (file name, title)
        The student notebooks in order.
    wheel : str or None
        File name of the package's wheel in ``student/``.
    student_repo : str, optional
        "owner/name[@branch]" of the repository that ``student/`` alone is published as (at its top
        level; the rest of the course folder holds the solutions): adds Binder and Colab links.
    """
    install = (f"    python -m pip install {wheel}\n" if wheel else
               "    python -m pip install koopman_tut   # ask your instructor for the package\n")
    rows = []
    for name, title in names:
        if student_repo:
            binder, colab = launch_links(student_repo, name)
            rows.append(f"| [{title}]({name}) | [Binder]({binder}) | [Colab]({colab}) |")
        else:
            rows.append(f"| [{title}]({name}) | | |")
    links_note = ("" if student_repo else
                  "\n(The Binder and Colab columns are filled in when your instructor builds the course with "
                  "`koopman-tut course OUTDIR --student-repo owner/name` and publishes this folder as that "
                  "repository.)\n")
    return README.format(install=install, rows="\n".join(rows), links_note=links_note)
