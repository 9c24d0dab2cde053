"""The one source of dependencies (pyproject.toml) and environment.yml list the same packages."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _test_requirements(meta: dict) -> list[str]:
    """The dependencies plus the test extra, with the extras it names (koopman_tut[course]) expanded."""
    out = list(meta["dependencies"])
    for spec in meta["optional-dependencies"]["test"]:
        m = re.match(r"koopman[_-]tut\[([^\]]+)\]", spec)
        out += (sum((meta["optional-dependencies"][e.strip()] for e in m.group(1).split(",")), []) if m else [spec])
    return out


def test_environment_yml_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = {_name(s) for s in _test_requirements(meta)}
    conda = set()
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)", line)
        if in_deps and m:
            name = _name(m.group(1))
            if name not in ("python", "pip"):
                conda.add(CONDA_NAMES.get(name, name))
    assert conda == pip, f"only in environment.yml: {sorted(conda - pip)}; only in pyproject.toml: {sorted(pip - conda)}"
    assert "-e ." in (ROOT / "environment.yml").read_text().split("pip:")[-1]


def test_no_exact_pins():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in _test_requirements(meta):
        assert "==" not in spec, f"use lower bounds, not pins: {spec}"


def test_small_modules_and_functions():
    """House style (micrograd/nanoGPT-sized pieces): no module over 300 lines, no function over 60."""
    import ast

    for path in sorted((ROOT / "koopman_tut").rglob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 300, f"{path.name}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.name}:{node.lineno} {node.name}: {length} lines"
