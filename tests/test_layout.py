"""The package's file tree draws its data path: stages in order, imports flowing one way, no cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "koopman_tut"
# record -> Trajectory -> Koopman analysis -> scores -> masks -> fine-tune, with the tooling beside it:
# a module may import its own stage and the stages before it, never a later one
STAGES = ("numerics", "recording", "pruning", "training", "plots", "tooling")
TOP_LEVEL_MAX = 4  # modules allowed beside the subpackages (__init__ excluded)


def module_name(path: Path, root: Path = PKG) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_imports(path: Path, root: Path = PKG) -> set[str]:
    """Dotted names of the package modules ``path`` imports at module level (not inside functions)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {m: {d for d in module_imports(p, root) if d in files and d != m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(u):
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return path[path.index(v):] + [v]
            if not state.get(v):
                found = visit(v)
                if found:
                    return found
        state[u] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if not state.get(m):
            found = visit(m)
            if found:
                return found
    return None


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 2 and parts[1] in STAGES else None


def stage_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in graph.items():
        for d in deps:
            sm, sd = stage_of(m), stage_of(d)
            if sm is not None and sd is not None and sd > sm:
                bad.append(f"{m} ({STAGES[sm]}) imports {d} ({STAGES[sd]})")
    return sorted(bad)


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_imports_follow_the_stage_order():
    assert stage_violations(import_graph()) == []


def test_subpackages_are_the_stages_and_few_modules_stay_on_top():
    subs = sorted(p.parent.name for p in PKG.glob("*/__init__.py"))
    assert subs == sorted(STAGES)
    top = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
    assert len(top) <= TOP_LEVEL_MAX, top
    for s in STAGES:
        doc = ast.get_docstring(ast.parse((PKG / s / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{s}/__init__.py needs a docstring saying what it owns and may import"


def test_the_checks_catch_a_cycle_and_a_backward_import(tmp_path):
    """The checks above could fail: a planted cycle and a planted import against the order are found."""
    pkg = tmp_path / "koopman_tut"
    for s in ("numerics", "tooling"):
        (pkg / s).mkdir(parents=True)
        (pkg / s / "__init__.py").write_text('"""x"""\n')
    (pkg / "__init__.py").write_text("")
    (pkg / "numerics" / "a.py").write_text("from . import b\nfrom ..tooling import cli\n")
    (pkg / "numerics" / "b.py").write_text("from .a import x\n")
    (pkg / "tooling" / "cli.py").write_text("import os\n")
    g = import_graph(pkg)
    assert find_cycle(g) in (["koopman_tut.numerics.a", "koopman_tut.numerics.b", "koopman_tut.numerics.a"],
                             ["koopman_tut.numerics.b", "koopman_tut.numerics.a", "koopman_tut.numerics.b"])
    assert stage_violations(g) == ["koopman_tut.numerics.a (numerics) imports koopman_tut.tooling.cli (tooling)"]


@pytest.mark.parametrize("name", ["dmd", "koopman", "Trajectory", "TrajectoryRecorder", "estimate_limit", "pruning",
                                  "models", "data", "train", "experiments", "plotting", "widgets", "distributed",
                                  "spectra"])
def test_public_names_stay(name):
    import koopman_tut as kt

    assert hasattr(kt, name)


def test_the_command_line_checks_its_arguments_before_torch_is_loaded():
    """koopman-tut refuses a bad -p at once: neither the package nor the CLI module loads torch
    (public names are imported on first use), so no 3 s torch import stands before the error."""
    import subprocess
    import sys

    code = ("import sys, koopman_tut, koopman_tut.tooling.cli as cli; "
            "rc = cli.main(['run', '-p', 'SEED', 'abc']); print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], (out.stdout, out.stderr)
    assert "SEED" in out.stderr


def test_the_readme_layout_names_every_module():
    """The README's Layout block lists each subpackage's modules (and folders): a module added or removed is
    named there too, so a newcomer's map of the package stays true."""
    readme = (PKG.parent / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```")[1]
    listed: dict[str, set[str]] = {}
    stage = None
    for line in block.splitlines():
        head = line[16:].split()
        if line.startswith(("koopman_tut/", " " * 16)) and head and head[0].endswith("/") and head[0][:-1] in STAGES:
            stage, line = head[0][:-1], " ".join(head[1:])
        elif not line.startswith(" " * 16):
            stage = None
        if stage:
            listed.setdefault(stage, set()).update(w.strip("(),+") for w in line.split() if w.strip("(),+"))
    for stage in STAGES:
        have = {p.stem for p in (PKG / stage).glob("*.py") if p.stem != "__init__"}
        have |= {p.name + "/" for p in (PKG / stage).iterdir() if p.is_dir() and not p.name.startswith("__")}
        assert have <= listed.get(stage, set()), (stage, sorted(have - listed.get(stage, set())))
        assert listed[stage] - {"_fused.c"} <= have, (stage, sorted(listed[stage] - have))
