"""The course kit (koopman_tut.tooling.course, ``koopman-tut course``): student copies without
solutions, instructor copies with everything (executed by papermill), and an offline HTML
site, on a small synthetic notebook and on the real notebooks."""
import base64
import io
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from koopman_tut.tooling import course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FORMULA = r"\hat\theta(t + h) = \sum_i \lambda_i^{t+h} b_i v_i"
SECRETS = ["SECRET_MARKDOWN_ANSWER", "SECRET_CODE_ANSWER", "SECRET_PRINTED_ANSWER", "SECRET_DETAILS_ANSWER"]


def png_bytes() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


PNG = base64.b64encode(png_bytes()).decode()


def synthetic_notebook() -> nbformat.NotebookNode:
    """Title + paragraph, parameters, an exercise (markdown + code with ``...``), its solution
    (markdown + code, tagged), a <details> solution block next to a hint, a figure, a widget
    output beside printed text, and a display formula. Runs top to bottom in a second."""
    cells = [
        new_markdown_cell("# Synthetic course notebook\n\nA first paragraph about $\\lambda_1 = 1$.\n\nMore."),
        new_code_cell("X = 2", metadata={"tags": ["parameters"]}),
        new_markdown_cell("**Exercise.** Square `X`.", metadata={"tags": ["exercise"]}),
        new_code_cell("answer = ...\nprint(answer)", metadata={"tags": ["exercise"]}, execution_count=3,
                      outputs=[new_output("stream", name="stdout", text="EXERCISE_STUB_OUTPUT\n")]),
        new_markdown_cell("**Solution.** SECRET_MARKDOWN_ANSWER: square it.", metadata={"tags": ["solution"]}),
        new_code_cell("answer = X ** 2  # SECRET_CODE_ANSWER\nprint('SECRET_PRINTED_ANSWER', answer)",
                      metadata={"tags": ["solution"]}, execution_count=4,
                      outputs=[new_output("stream", name="stdout", text="SECRET_PRINTED_ANSWER 4\n")]),
        new_markdown_cell("## Exercises\n\n1. Keep this question.\n\n"
                          "<details><summary>Solution 1</summary>\n\nSECRET_DETAILS_ANSWER\n\n</details>\n\n"
                          "<details><summary>Hint</summary>\n\nHINT_TEXT\n</details>"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.figure(figsize=(1, 1), dpi=20)\nplt.plot([0, 1])\nplt.show()",
                      execution_count=5,
                      outputs=[new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]),
        new_code_cell("print('TABLE_TEXT')", execution_count=6,
                      outputs=[new_output("stream", name="stdout", text="TABLE_TEXT\n"),
                               new_output("execute_result", execution_count=6, data={
                                   course.WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0},
                                   "text/plain": "interactive(children=(Dropdown(...),))"})]),
        new_markdown_cell(f"The forecast\n$$\n{FORMULA}\n$$\nand inline $|v_1|$."),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                          "version_minor": 0}}
    return nb


@pytest.fixture
def nb_path(tmp_path) -> Path:
    path = tmp_path / "src" / "00_synthetic.ipynb"
    path.parent.mkdir()
    nbformat.write(synthetic_notebook(), str(path))
    return path


class ExternalRefs(HTMLParser):
    """src= of <script> and href= of <link> tags (and every <img> src)."""

    def __init__(self):
        super().__init__()
        self.loads, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("href"):
            self.loads.append(a["href"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))


def refs(page: Path) -> ExternalRefs:
    p = ExternalRefs()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def is_remote(url: str) -> bool:
    return bool(re.match(r"^\s*(https?:)?//", url, re.IGNORECASE))


# 1. student copies: no solution anywhere, exercise outputs cleared, everything else kept

def test_strip_solution_details():
    text = ("Q1\n\n<details><summary>Solution 1</summary>\nA1 <details><summary>more</summary>deep</details>\n"
            "</details>\n\nQ2\n\n<DETAILS open><summary><b>Worked solution</b></summary>A2</DETAILS>\n\n"
            "<details><summary>Hint</summary>H</details>\n\n<details><summary>SOLUTION 3</summary>never closed")
    out = course.strip_solution_details(text)
    assert "A1" not in out and "deep" not in out and "A2" not in out and "never closed" not in out
    assert "Q1" in out and "Q2" in out and "<summary>Hint</summary>H</details>" in out
    assert course.strip_solution_details("no details here\n\n\n") == "no details here\n\n\n"


def test_student_copy_has_no_solutions(nb_path):
    nb = nbformat.read(str(nb_path), as_version=4)
    before = json.dumps(nb, sort_keys=True)
    student = course.student_copy(nb)
    assert json.dumps(nb, sort_keys=True) == before, "the input notebook is left alone"
    assert not any(course.is_solution(c) for c in student.cells)
    text = json.dumps(student)
    for secret in SECRETS:
        assert secret not in text
    assert "<summary>Solution" not in text and "HINT_TEXT" in text and "Keep this question" in text
    ex = [c for c in student.cells if c.cell_type == "code" and course.is_exercise(c)]
    assert len(ex) == 1 and ex[0].outputs == [] and ex[0].execution_count is None and "..." in ex[0].source
    assert any(c.cell_type == "markdown" and course.is_exercise(c) for c in student.cells)
    assert PNG in text and "TABLE_TEXT" in text, "figures and other outputs stay"
    assert any(FORMULA in c.source for c in student.cells if c.cell_type == "markdown")
    nbformat.validate(student)


# 2. instructor copies: everything; executed by papermill

def test_instructor_copy_without_execution_is_the_notebook(nb_path, tmp_path):
    dst = course.instructor_copy(nb_path, tmp_path / "instructor" / nb_path.name, execute=False)
    assert dst.read_bytes() == nb_path.read_bytes()
    text = dst.read_text()
    assert all(s in text for s in SECRETS) and "EXERCISE_STUB_OUTPUT" in text


def test_instructor_copy_executes_with_papermill(nb_path, tmp_path):
    dst = course.instructor_copy(nb_path, tmp_path / "instructor" / nb_path.name, parameters={"X": 3})
    nb = nbformat.read(str(dst), as_version=4)
    assert "papermill" in nb.metadata and not list(dst.parent.glob(".*.ipynb")), "no temporaries left"
    printed = {c.source.splitlines()[0]: "".join(o.get("text", "") for o in c.outputs)
               for c in nb.cells if c.cell_type == "code"}
    assert printed["answer = X ** 2  # SECRET_CODE_ANSWER"] == "SECRET_PRINTED_ANSWER 9\n"
    assert printed["answer = ..."] == "Ellipsis\n"
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert all(s in json.dumps(nb) for s in SECRETS), "solutions stay in the instructor copy"


def test_instructor_copy_failure_leaves_nothing(tmp_path):
    src = tmp_path / "00_bad.ipynb"
    nb = new_notebook(cells=[new_code_cell("raise ValueError('boom')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(src))
    with pytest.raises(Exception, match="boom"):
        course.instructor_copy(src, tmp_path / "out" / src.name)
    assert list((tmp_path / "out").iterdir()) == []


# 3. the offline site

def test_site_pages_are_offline_with_figures_and_math(nb_path, tmp_path):
    site = tmp_path / "site"
    pages = course.render_site([nb_path], site)
    page, index = site / "00_synthetic.html", site / "index.html"
    assert pages == [page, index] and page.is_file() and index.is_file()
    html_text = page.read_text(encoding="utf-8")
    found = refs(page)
    assert f"data:image/png;base64,{PNG}" in found.imgs, "the figure is embedded"
    assert FORMULA in html_text and "$$" in html_text, "the formula's TeX is there for MathJax"
    for p in (page, index):
        r = refs(p)
        assert r.loads and not [u for u in r.loads if is_remote(u)], f"{p.name} loads {r.loads}"
        for u in r.loads:  # every script / stylesheet is in the site folder
            assert (site / u.split("?")[0]).is_file(), u
        text = p.read_text(encoding="utf-8")
        assert "cdnjs" not in text and "unpkg" not in text and "require.js" not in text
    assert "MathJax.js" in " ".join(found.loads)
    # widgets: the view is gone, a note says why, the printed table stays
    assert course.WIDGET_VIEW not in html_text and "interactive(children" not in html_text
    assert course.WIDGET_NOTE in html_text and "TABLE_TEXT" in html_text
    # the instructor flavour: solutions are shown, and the index says so
    assert "SECRET_PRINTED_ANSWER 4" in html_text and "SECRET_DETAILS_ANSWER" in html_text
    index_text = index.read_text(encoding="utf-8")
    assert "instructor" in index_text and 'href="00_synthetic.html"' in index_text
    assert "Synthetic course notebook" in index_text and "A first paragraph about" in index_text
    assert "More." not in index_text, "only the first paragraph"


def test_title_and_first_paragraph():
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_markdown_cell(
        "# 01 · Title *here*\n\n**What you will learn**\n\n* one\n* two\n\nLater.")])
    assert course.notebook_title(nb) == "01 · Title *here*"
    assert course.first_paragraph(nb) == "**What you will learn**\n\n* one\n* two"
    assert course.notebook_title(new_notebook(), "fallback") == "fallback"


# 4. the command on the real notebooks

def test_course_command_on_the_real_notebooks(tmp_path):
    assert len(NOTEBOOKS) >= 7
    committed = {p: p.read_bytes() for p in NOTEBOOKS}
    exe = Path(sys.executable).with_name("koopman-tut")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "koopman_tut.tooling.cli"]
    out = tmp_path / "OUT"
    proc = subprocess.run([*cmd, "course", str(out), "--no-execute"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [p.name for p in NOTEBOOKS]
    assert sorted(p.name for p in (out / "student").glob("*.ipynb")) == names
    assert sorted(p.name for p in (out / "instructor").glob("*.ipynb")) == names
    html_pages = sorted(p.name for p in (out / "site").glob("*.html"))
    assert html_pages == sorted([n.replace(".ipynb", ".html") for n in names] + ["index.html"])
    assert len(html_pages) == len(NOTEBOOKS) + 1
    had_solutions = False
    for p in NOTEBOOKS:
        assert (out / "instructor" / p.name).read_bytes() == committed[p], "instructor = committed notebook"
        nb = nbformat.read(str(p), as_version=4)
        student = nbformat.read(str(out / "student" / p.name), as_version=4)
        had_solutions |= any(course.is_solution(c) or "<summary>Solution" in c.source for c in nb.cells)
        assert not any(course.is_solution(c) for c in student.cells)
        assert not any("<summary>Solution" in c.source for c in student.cells)
        assert all(not c.outputs for c in student.cells if c.cell_type == "code" and course.is_exercise(c))
        kept = [c for c in nb.cells if c.cell_type == "code" and not course.is_solution(c) and not course.is_exercise(c)]
        assert [c.outputs for c in student.cells if c.cell_type == "code" and not course.is_exercise(c)] == \
            [c.outputs for c in kept], "other outputs (figures, tables) kept"
    assert had_solutions, "the tutorial's exercises have solutions to strip"
    index = (out / "site" / "index.html").read_text()
    assert [m for m in re.findall(r'href="([^"]+\.html)"', index)] == [n.replace(".ipynb", ".html") for n in names]
    assert all(not is_remote(u) for page in (out / "site").glob("*.html") for u in refs(page).loads)
    assert {p: p.read_bytes() for p in NOTEBOOKS} == committed, "notebooks/ untouched"


def test_course_command_refuses_to_write_into_notebooks(capsys):
    from koopman_tut.tooling import cli

    assert cli.main(["course", str(ROOT / "notebooks" / "course"), "--no-execute"]) == 2
    assert "inside" in capsys.readouterr().err
    assert not (ROOT / "notebooks" / "course").exists()


# 5. the course folder: never over a student's work, no stale files, no traceback

@pytest.fixture
def course_cli(nb_path, tmp_path, monkeypatch):
    """``koopman-tut course`` in-process on the synthetic notebook (copied, not executed)."""
    from koopman_tut.tooling import cli

    monkeypatch.setenv("KOOPMAN_TUT_NOTEBOOKS", str(nb_path.parent))
    return lambda out, *args: cli.main(["course", str(out), "--no-execute", *args])


def test_course_refuses_a_non_empty_folder_unless_forced(course_cli, tmp_path, capsys):
    out = tmp_path / "OUT"
    work = out / "student" / "00_synthetic.ipynb"
    work.parent.mkdir(parents=True)
    work.write_text("a student's answers")
    assert course_cli(out) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and "Traceback" not in err
    assert work.read_text() == "a student's answers" and sorted(p.name for p in out.rglob("*")) == [
        "00_synthetic.ipynb", "student"]
    stale = [out / "student" / "99_old.ipynb", out / "site" / "99_old.html",
             out / "instructor" / ".00_x.kt-tmp-1.ipynb"]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text("stale")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("kept")
    (out / "notes.txt").write_text("not the course's")
    assert course_cli(out, "--force") == 0
    assert not any(p.exists() for p in stale) and (out / "notes.txt").read_text() == "not the course's"
    assert "SECRET_CODE_ANSWER" not in (out / "student" / "00_synthetic.ipynb").read_text()
    assert sorted(p.name for p in (out / "student").iterdir()) == ["00_synthetic.ipynb"]
    # a course folder that is a link is removed as a link: what it points to stays
    (out / "site").rename(tmp_path / "old_site")
    (out / "site").symlink_to(elsewhere)
    assert course_cli(out, "--force") == 0
    assert (elsewhere / "keep.txt").read_text() == "kept" and not (out / "site").is_symlink()


@pytest.mark.parametrize("make", ["file", "parent is a file"])
def test_course_folder_that_is_a_file(course_cli, tmp_path, capsys, make):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if make == "file" else blocker / "OUT"
    assert course_cli(out) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and ("is a file" in err or "Not a directory" in err) and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_course_files_follow_the_umask(nb_path, tmp_path, umask):
    old = os.umask(umask)
    try:
        result = course.build_course([nb_path], tmp_path / "OUT", execute=True, log=lambda *a: None)
    finally:
        os.umask(old)
    assert not result.failed and result.instructor and result.student and result.site
    files = [p for p in (tmp_path / "OUT").rglob("*") if p.is_file()]
    assert len(files) > 100, "MathJax came along"
    wrong = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != 0o666 & ~umask}
    wrong.update({str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in (tmp_path / "OUT").rglob("*")
                  if p.is_dir() and p.stat().st_mode & 0o777 != 0o777 & ~umask})
    assert not wrong, wrong
    assert not [p for p in files if ".kt-tmp-" in p.name], "no temporaries left"
