"""Exercises that answer back, and predictions before answers, in every notebook.

* structure: each exercise is prompt, ``answer = ...`` cell, solution cells, check cell, with
  nbgrader metadata; each "Predict first" prompt comes before the cell that reveals it
  (koopman_tut.tooling.cells.exercise_problems);
* every exercise has a checker, which says "not yet" to ``...`` without raising, and raises
  only under nbgrader's autograder;
* end to end: every student notebook runs with ``SMOKE = True`` and each check cell says
  "not yet"; with each solution pasted into its exercise cell, each check says "right".
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from koopman_tut.tooling import cells, checks, course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def exercise_ids(nb) -> list[str]:
    out = []
    for c in nb.cells:
        eid = cells.exercise_id(c)
        if eid and eid not in out:
            out.append(eid)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_and_prediction_structure(path):
    nb = nbformat.read(str(path), as_version=4)
    assert cells.exercise_problems(nb) == []
    ids = exercise_ids(nb)
    assert ids and all(i.startswith(path.stem[:2] + ".") for i in ids), ids
    assert ids == [f"{path.stem[:2]}.{k}" for k in range(1, len(ids) + 1)], "numbered in order"
    assert any(cells.has_tag(c, cells.PREDICT_TAG) for c in nb.cells), "at least one prediction to make"
    for eid in ids:
        assert checks.find(eid), eid
        ok, why = checks.verdict(eid, ...)
        assert not ok and why.startswith("replace `...`"), why
    for c in nb.cells:  # a check cell's printout in the committed (instructor) notebook says right
        if cells.has_tag(c, cells.CHECK_TAG):
            text = "".join(o.get("text", "") for o in c.outputs)
            assert re.search(r"Exercise \d\d\.\d+: right\.", text), (cells.exercise_id(c), text)


def test_check_says_not_yet_and_raises_only_for_nbgrader(monkeypatch, capsys):
    @checks.checker("99.1", "an int: 2 squared")
    def _square(answer):
        return answer == 4, "right" if answer == 4 else "that is not 2 squared. Hint: multiply."

    assert checks.check("99.1", 4) is None, "no result: a check cell shows only its message"
    checks.check("99.1", ...)
    checks.check("99.1", "four")
    out = capsys.readouterr().out
    assert "Exercise 99.1: right. Right" in out and "Replace `...` with an int: 2 squared" in out
    assert out.count("not yet") == 2
    assert checks.verdict("99.1", object())[0] is False, "an answer of the wrong kind is 'not yet'"
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    checks.check("99.1", 4)
    with pytest.raises(AssertionError, match="99.1"):
        checks.check("99.1", 5)
    with pytest.raises(ValueError, match="like '03.1'"):
        checks.check("3.1", 1)
    with pytest.raises(ValueError, match="no checker"):
        checks.check("99.7", 1)


def test_problems_are_found():
    """exercise_problems could fail: a planted violation of each rule is reported."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    meta = {"koopman_tut": {"exercise": "00.1"}}
    good = [new_markdown_cell("**Exercise 1.**", metadata={"tags": ["exercise"], **meta}),
            new_code_cell("answer = ...", metadata={"tags": ["exercise"], **meta,
                                                    "nbgrader": cells.nbgrader_metadata("00.1", "answer")}),
            new_code_cell("answer = 4\nprint(answer)", metadata={"tags": ["solution"], **meta}),
            new_code_cell('check("00.1", answer)', metadata={"tags": ["check"], **meta,
                                                             "nbgrader": cells.nbgrader_metadata("00.1", "check")}),
            new_markdown_cell("**Predict first:** x?", metadata={"tags": ["predict"]}),
            new_code_cell("x", metadata={"tags": ["reveal"]})]
    assert cells.exercise_problems(new_notebook(cells=good)) == []
    swapped = good[:4] + [good[5], good[4]]
    assert any("reveal cell with no predict" in p for p in cells.exercise_problems(new_notebook(cells=swapped)))
    apart = good[:5] + [new_code_cell("def f(): pass"), good[5]]
    assert any("followed at once" in p for p in cells.exercise_problems(new_notebook(cells=apart)))
    no_check = good[:3] + good[4:]
    assert any("expected a code cell tagged check" in p for p in cells.exercise_problems(new_notebook(cells=no_check)))
    import copy

    bare = copy.deepcopy(good)
    bare[1].source = "answer = 3"
    del bare[3].metadata["nbgrader"]
    probs = cells.exercise_problems(new_notebook(cells=bare))
    assert any("answer = ..." in p for p in probs) and any("nbgrader" in p for p in probs)


def student_run(path: Path, tmp_path: Path, paste: bool) -> dict[str, str]:
    """Run the student copy of ``path`` (optionally with each solution pasted into its exercise
    cell) with SMOKE = True; returns exercise id -> what its check cell printed."""
    import papermill as pm

    from koopman_tut.tooling.runner import kernel_options

    nb = nbformat.read(str(path), as_version=4)
    solutions = cells.solution_code(nb)
    student = course.student_copy(nb)
    if paste:
        for c in student.cells:
            if c.cell_type == "code" and cells.is_exercise(c):
                c.source = solutions[cells.exercise_id(c)]
    src, out = tmp_path / f"student_{path.name}", tmp_path / f"ran_{path.name}"
    nbformat.write(student, str(src))
    pm.execute_notebook(str(src), str(out), parameters={"SMOKE": True, "SEED": 3}, cwd=str(path.parent),
                        progress_bar=False, kernel_name="python3", **kernel_options())
    ran = nbformat.read(str(out), as_version=4)
    return {cells.exercise_id(c): "".join(o.get("text", "") for o in c.outputs)
            for c in ran.cells if cells.has_tag(c, cells.CHECK_TAG)}


@pytest.mark.slow
@pytest.mark.parametrize("paste", [False, True], ids=["as_handed_out", "solutions_pasted"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebook_checks_answer_back(path, paste, tmp_path):
    said = student_run(path, tmp_path, paste)
    ids = exercise_ids(nbformat.read(str(path), as_version=4))
    assert sorted(said) == sorted(ids)
    for eid, text in said.items():
        want = "right" if paste else "not yet"
        assert f"Exercise {eid}: {want}." in text, (eid, text)
        assert "Traceback" not in text


@pytest.mark.slow
def test_nbgrader_autogrades_the_check_cells(tmp_path):
    """The course's nbgrader/ folder works with nbgrader itself: generate_assignment releases the
    answer cells with their starting code and the stub `answer = ...`; autograde gives 0 points to
    a submission left as released and every point to one with the solutions pasted in, also where an answer
    cell names a variable `check` (each check cell imports the checker again)."""
    import os
    import subprocess
    import sys

    from nbgrader.api import Gradebook

    name = "01_koopman_and_dmd"
    path = ROOT / "notebooks" / f"{name}.ipynb"
    course.build_course([path], tmp_path / "course", execute=False, log=lambda *a: None, wheel=False)
    root = tmp_path / "course" / "nbgrader"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def nbgrader(*args):
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    nbgrader("generate_assignment", name)
    released = nbformat.read(str(root / "release" / name / f"{name}.ipynb"), as_version=4)
    answer_cells = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answer_cells and all(c.source.rstrip().endswith("answer = ...  # YOUR CODE HERE") for c in answer_cells)
    source = nbformat.read(str(path), as_version=4)
    wanted = [ln.partition("#")[2].strip() for c in source.cells if course.is_exercise(c) and c.cell_type == "code"
              for ln in c.source.splitlines() if ln.startswith("answer = ...")]
    assert wanted and all(f"# answer: {w}" in c.source for w, c in zip(wanted, answer_cells)), \
        "what answer should hold stays in the released cell"
    assert "papermill" not in released.metadata, "nor the instructor's run and paths"
    assert "### BEGIN SOLUTION" not in nbformat.writes(released)
    solutions = cells.solution_code(nbformat.read(str(path), as_version=4))
    for who in ("blank", "solved", "shadowed"):  # shadowed: solved, and an answer names a variable `check`
        sub = nbformat.reads(nbformat.writes(released), as_version=4)
        if who != "blank":
            for c in sub.cells:
                if c.metadata.get("nbgrader", {}).get("solution"):
                    c.source = solutions[cells.exercise_id(c)] + ("\ncheck = 'my own name'" if who == "shadowed" else "")
        out = root / "submitted" / who / name / f"{name}.ipynb"
        out.parent.mkdir(parents=True)
        nbformat.write(sub, str(out))
    nbgrader("autograde", name, "--create")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        blank, solved, shadowed = (gb.find_submission(name, who) for who in ("blank", "solved", "shadowed"))
        assert blank.max_score == solved.max_score == len(answer_cells)
        assert (blank.score, solved.score, shadowed.score) == (0, len(answer_cells), len(answer_cells))
