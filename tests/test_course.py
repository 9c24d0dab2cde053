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
from koopman_tut.tooling.cells import READING, answer_cells, answer_prose, split_prose

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
    ex1 = {"koopman_tut": {"exercise": "00.1"}}
    cells = [
        new_markdown_cell("# Synthetic course notebook\n\nA first paragraph about $\\lambda_1 = 1$.\n\nMore."),
        new_code_cell("X = 2", metadata={"tags": ["parameters"]}),
        new_markdown_cell("**Predict first:** what is X + 1?", metadata={"tags": ["predict"]}),
        new_code_cell("print('REVEALED', X + 1)", metadata={"tags": ["reveal"]}, execution_count=2,
                      outputs=[new_output("stream", name="stdout", text="REVEALED 3 quokka\n")]),
        new_code_cell("print('FOLLOWS_THE_REVEAL', X + 2)", execution_count=2,  # answers the prompt too
                      outputs=[new_output("stream", name="stdout", text="FOLLOWS_THE_REVEAL 4\n")]),
        new_markdown_cell("**Reading.** The same answer, drawn by a wombat:"),  # not a heading: the section goes on
        new_code_cell("print('AFTER_READING', X + 3)", execution_count=2,
                      metadata={"mystnb": {"figure": {"caption": "REVEAL_CAPTION X + 1 is 3"}}},
                      outputs=[new_output("stream", name="stdout", text="AFTER_READING 5\n")]),
        new_markdown_cell("**Exercise.** Square `X`.", metadata={"tags": ["exercise"], **ex1}),
        new_code_cell("answer = ...\nprint(answer)", metadata={"tags": ["exercise"], **ex1}, execution_count=3,
                      outputs=[new_output("stream", name="stdout", text="EXERCISE_STUB_OUTPUT\n")]),
        new_markdown_cell("**Solution.** SECRET_MARKDOWN_ANSWER: square it.", metadata={"tags": ["solution"], **ex1}),
        new_code_cell("answer = X ** 2  # SECRET_CODE_ANSWER\nprint('SECRET_PRINTED_ANSWER', answer)",
                      metadata={"tags": ["solution"], **ex1}, execution_count=4,
                      outputs=[new_output("stream", name="stdout", text="SECRET_PRINTED_ANSWER 4\n")]),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('CHECKED', answer == X ** 2)", metadata={"tags": ["check"], **ex1},
                      execution_count=5, outputs=[new_output("stream", name="stdout", text="CHECKED True\n")]),
        new_markdown_cell("## Exercises\n\n1. Keep this question.\n\n"
                          "<details><summary>Solution 1</summary>\n\nSECRET_DETAILS_ANSWER\n\n</details>\n\n"
                          "<details><summary>Hint</summary>\n\nHINT_TEXT\n</details>"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.figure(figsize=(1, 1), dpi=20)\nplt.plot([0, 1])\nplt.show()",
                      execution_count=6, metadata={"mystnb": {"figure": {"caption": "FIGURE_CAPTION a rising line.",
                                                                         "name": "fig-00-line"},
                                                              "image": {"alt": "ALT_TEXT a line from bottom left"}}},
                      outputs=[new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]),
        new_code_cell("print('TABLE_TEXT')", execution_count=7,
                      outputs=[new_output("stream", name="stdout", text="TABLE_TEXT\n"),
                               new_output("execute_result", execution_count=7, data={
                                   course.WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0},
                                   "text/plain": "interactive(children=(Dropdown(...),))"})]),
        new_markdown_cell(f"The forecast\n$$\n{FORMULA}\n$$\nand inline $|v_1|$, see [notebook 00](00_synthetic.ipynb)."),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('CLAIM_VERDICT', X > 1)", execution_count=8,  # a claim's verdict
                      outputs=[new_output("stream", name="stdout", text="CLAIM_VERDICT True\n")]),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {"input_path": "/home/INSTRUCTOR_PATH/00_synthetic.ipynb", "parameters": {}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {  # what a widget showed when run
        "state": {"abc": {"model_name": "OutputModel", "state": {"outputs": [{"text": "WIDGET_SHOWED_THE_ANSWER"}]}}},
        "version_major": 2, "version_minor": 0}}
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


def test_student_copies_do_not_name_the_instructors_folders():
    """A warning's output names the file that raised it: the clone that ran the notebook is cut from it."""
    warned = f"{ROOT}{os.sep}koopman_tut/pruning/koopman.py:169: UntrustedLimitWarning: the window cannot pin"
    nb = new_notebook(cells=[new_code_cell("k.limit()", outputs=[
        new_output("stream", name="stderr", text=warned),
        new_output("execute_result", data={"text/plain": f"'{ROOT}{os.sep}x.py'"}, execution_count=1)])])
    for copy in (course.student_copy(nb), course.student_copy(nb, clear_reveals=False)):
        text = json.dumps(copy)
        assert str(ROOT) not in text and "koopman_tut/pruning/koopman.py:169: UntrustedLimitWarning" in text
    assert str(ROOT) in json.dumps(nb)  # the instructor's copy keeps it


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_the_verdict_cells_source_is_hidden_from_students(path):
    """The cells that print the checked claims' verdicts assert, and label, the answers to the "Predict first"
    prompts (05: "at step 80 the straight line a=2 beats KMP"): their source is collapsed in student/ and
    nbgrader/ and folded on the student site; other code cells, and every instructor copy, show theirs."""
    from koopman_tut.tooling.cells import is_verdict
    from koopman_tut.tooling.site_pages import site_notebook

    nb = nbformat.read(str(path), as_version=4)
    hidden = lambda c: c.metadata.get("jupyter", {}).get("source_hidden", False)  # noqa: E731
    verdicts = [c.source for c in nb.cells if is_verdict(c)]
    before = [c.source for c in nb.cells if hidden(c)]  # the collapsed setup cell
    assert verdicts and not set(verdicts) & set(before)
    for copy in (course.student_copy(nb), course.nbgrader_copy(nb)):
        shown = [c.source for c in copy.cells if c.cell_type == "code" and not hidden(c)]
        assert not set(verdicts) & set(shown) and sum(map(hidden, copy.cells)) == len(verdicts) + len(before)
    site = site_notebook(course.student_copy(nb, clear_reveals=False), "student")
    assert sum("hide-input" in c.metadata.get("tags", []) for c in site.cells if "assert" in c.source) >= 1
    assert not any("hide-input" in c.metadata.get("tags", []) for c in site_notebook(nb, "instructor").cells
                   if c.source.lstrip().startswith("assert"))


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
    assert "CHECKED True" not in text, "check cells run fresh in the student's kernel"
    i = next(i for i, c in enumerate(student.cells) if course.has_tag(c, "reveal"))
    assert student.cells[i].outputs == [] and "REVEALED 3" not in text, "no answer before the prediction"
    assert "FOLLOWS_THE_REVEAL 4" not in text and "CLAIM_VERDICT True" not in text, "nor in the cells after it"
    assert "AFTER_READING 5" not in text and "REVEAL_CAPTION" not in text, "nor past a reading, caption included"
    assert "INSTRUCTOR_PATH" not in text, "nor the instructor's run"
    from koopman_tut.tooling.site_pages import site_notebook

    folded = [c for c in site_notebook(nb, "student").cells
              if c.cell_type == "code" and ("FOLLOWS" in c.source or "CLAIM" in c.source or "AFTER_READING" in c.source)]
    assert len(folded) == 3 and all("hide-output" in c.metadata["tags"] for c in folded), "the site folds them"
    assert student.cells[i - 1].cell_type == "markdown" and "Your prediction:" in student.cells[i - 1].source
    assert course.has_tag(student.cells[i - 2], "predict"), "prompt, then the student's prediction, then the reveal"
    nbformat.validate(student)
    kept = course.student_copy(nb, clear_reveals=False)
    assert "REVEALED 3" in json.dumps(kept) and "Your prediction:" not in json.dumps(kept)
    assert "FOLLOWS_THE_REVEAL 4" in json.dumps(kept) and "CLAIM_VERDICT True" in json.dumps(kept)
    assert not any(s in json.dumps(kept) for s in SECRETS)
    # the saved widget state holds what the widgets showed when the notebook ran: not handed out, and the
    # widget views that would need it say to run their cell
    views = [o for c in student.cells if c.cell_type == "code" for o in c.outputs if course.WIDGET_VIEW in o.get("data", {})]
    assert views == [] and course.WIDGET_NOTE in text
    assert "WIDGET_SHOWED_THE_ANSWER" in json.dumps(nb) and "WIDGET_SHOWED_THE_ANSWER" not in text
    assert "WIDGET_SHOWED_THE_ANSWER" not in json.dumps(course.nbgrader_copy(nb))
    # the same notebook gives the same student copy, byte for byte (no random cell ids): no churn when republished
    assert nbformat.writes(course.student_copy(nb)) == nbformat.writes(student)


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
    nb.metadata["papermill"] = {"input_path": "/home/INSTRUCTOR_PATH/00_synthetic.ipynb", "parameters": {}}
    nbformat.write(nb, str(src))
    with pytest.raises(Exception, match="boom"):
        course.instructor_copy(src, tmp_path / "out" / src.name)
    assert list((tmp_path / "out").iterdir()) == []


# 3. the offline site

def site_text(site: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(site.glob("*.html")))


@pytest.mark.parametrize("flavour", ["student", "instructor"])
def test_sites_are_offline_books_with_figures_math_and_no_markers(nb_path, tmp_path, flavour):
    """Sphinx + MyST-NB + book theme, built without a network: every script and stylesheet is in
    the site; the figure is numbered, captioned and has its alt text; test markers are gone; the
    widget became a note; the student site has no solution, the instructor site has each one in a
    dropdown; a "Predict first" box, and (student) a "Your prediction" box before the folded reveal."""
    nb = nbformat.read(str(nb_path), as_version=4)
    src = nb_path
    if flavour == "student":
        src = tmp_path / "student" / nb_path.name
        src.parent.mkdir()
        nbformat.write(course.student_copy(nb, clear_reveals=False), str(src))
    index = course.build_site([src], tmp_path / "site", flavour, log=lambda *a: None)
    site = index.parent
    page = site / "00_synthetic.html"
    assert index.is_file() and page.is_file() and (site / "search.html").is_file() and (site / "searchindex.js").is_file()
    text = site_text(site)
    for p in site.glob("*.html"):
        r = refs(p)
        assert r.loads and not [u for u in r.loads if is_remote(u)], f"{p.name} loads {r.loads}"
        for u in r.loads:
            assert u.startswith("#") or (site / u.split("?")[0].split("#")[0]).is_file(), u
    assert "mathjax/MathJax.js" in text and FORMULA.replace("\\", "\\") in page.read_text()
    assert "FIGURE_CAPTION" in text and "Figure 1" in text and 'alt="ALT_TEXT a line from bottom left"' in text
    assert "NBVAL_CHECK_OUTPUT" not in text and course.WIDGET_NOTE in text and "interactive(children" not in text
    assert "TABLE_TEXT" in text and "Predict first" in text
    assert 'class="reference internal" href="#' in text or "00_synthetic.html" in text, "the notebook link resolves"
    if flavour == "student":
        assert not any(s_ in text for s_ in SECRETS) and "CHECKED True" not in text
        assert "Your prediction" in text and "REVEALED 3" in text, "the reveal is folded, not lost"
        assert text.index("Your prediction") < text.index("REVEALED 3")
    else:
        assert all(s_ in text for s_ in ["SECRET_MARKDOWN_ANSWER", "SECRET_PRINTED_ANSWER"])
        assert re.search(r"<details[^>]*>\s*<summary[^>]*>.*Solution 00\.1", text, re.DOTALL), "solution dropdown"
        assert "Your prediction" not in text
    # what the student site folds stays out of its search index (whose results quote it); the instructor's has it
    terms = set(json.loads(re.search(r'"terms":\s*(\{.*?\})', (site / "searchindex.js").read_text()).group(1)))
    assert {"synthet", "paragraph", "table_text"} <= terms, "the index is read as Sphinx writes it"
    assert bool({"quokka", "wombat"} & terms) == (flavour == "instructor"), sorted(terms)


def test_site_build_failure_leaves_the_old_site(nb_path, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("old")
    from koopman_tut.tooling import site as site_mod

    monkeypatch.setattr(site_mod, "CONF_PY", "raise SystemExit('broken conf')\n")
    with pytest.raises(RuntimeError, match="Sphinx build"):
        course.build_site([nb_path], site, "instructor", log=lambda *a: None)
    assert (site / "index.html").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["site", "src"]


def test_slides_are_offline_decks_without_solutions(nb_path, tmp_path):
    from koopman_tut.tooling import slides

    decks = slides.build_slides([nb_path], tmp_path / "slides")
    deck = decks[0]
    text = deck.read_text(encoding="utf-8")
    assert deck.name == "00_synthetic.slides.html" and "<section" in text and "Reveal.initialize" in text
    assert not [u for u in refs(deck).loads if is_remote(u)] and "unpkg" not in text and "require.js" not in text
    for u in refs(deck).loads:
        assert (deck.parent / u.split("?")[0]).is_file(), u
    assert (deck.parent / "reveal.js" / "dist" / "reveal.js").is_file() and (deck.parent / "reveal.js" / "LICENSE").is_file()
    assert not any(s_ in text for s_ in SECRETS) and "CHECKED" not in text
    assert "Predict first" in text and "REVEALED 3" in text and 'class="fragment"' in text
    assert 'alt="ALT_TEXT a line from bottom left"' in text and "Synthetic course notebook" in text


def test_student_readme_and_launch_links():
    text = course.student_readme([("03_x.ipynb", "03 · X")], "koopman_tut-0.1.0-py3-none-any.whl", "me/course@spring")
    assert "pip install koopman_tut-0.1.0-py3-none-any.whl" in text and "jupyter lab" in text
    # the repository is student/ alone, at its top level (the course folder also holds the solutions)
    assert "https://mybinder.org/v2/gh/me/course/spring?labpath=03_x.ipynb" in text
    assert "https://colab.research.google.com/github/me/course/blob/spring/03_x.ipynb" in text
    assert "not yet" in text and "right" in text
    assert "--student-repo" in course.student_readme([("03_x.ipynb", "03 · X")], None)
    assert course.launch_links("my-org/course.2026_spring@feature/week-1", "x.ipynb")[1].endswith(
        "/my-org/course.2026_spring/blob/feature/week-1/x.ipynb")
    # every branch name git accepts (git check-ref-format --branch), percent-encoded where a URL needs it
    for branch in ("v1+fix", "week#1", "café", "a,b", "feat@2", "v1.0", "a.lockb"):
        binder, colab = course.launch_links(f"me/course@{branch}", "x.ipynb")
        assert "#" not in binder + colab and " " not in binder + colab
    assert course.launch_links("me/c@week#1", "x.ipynb")[0] == "https://mybinder.org/v2/gh/me/c/week%231?labpath=x.ipynb"
    for bad in ("me", "me/", "/course", "a/b/c", "a b/c d", "-me/course", "me/course@", "me/course@a..b",
                "me/course@-x", "me/..", "me/course?x=1", "me/course@feature/", "me/course@a//b", "me/course@x.lock",
                "me/course@.hidden", "me/course@a b", "me/course@a:b", "me/course@a@{b", "me/course@x."):
        with pytest.raises(ValueError, match="owner/name"):
            course.launch_links(bad, "x.ipynb")


def test_the_wheel_is_the_same_on_every_build(tmp_path):
    """Republished student folders do not churn: the wheel's files carry a fixed date, not the build's."""
    import time

    root = Path(__file__).resolve().parents[1]
    first = course.build_wheel(root, tmp_path / "a")
    time.sleep(2.1)  # zip dates have a resolution of two seconds
    assert course.build_wheel(root, tmp_path / "b").read_bytes() == first.read_bytes()


def test_links_to_notebooks_left_out_of_a_site_become_text():
    from koopman_tut.tooling.site import unlink_absent

    text = "See [notebook 03](03_kmp.ipynb), [its table](03_kmp.ipynb#table) and [01](01_dmd.ipynb); [web](https://x.org)."
    assert unlink_absent(text, {"01_dmd.ipynb"}) == "See notebook 03, its table and [01](01_dmd.ipynb); [web](https://x.org)."
    assert unlink_absent(text, {"01_dmd.ipynb", "03_kmp.ipynb"}) == text
    from_docs = "See [notebook 03](../notebooks/03_kmp.ipynb#table) and [01](../notebooks/01_dmd.ipynb)."
    assert unlink_absent(from_docs, {"03_kmp.ipynb"}) == "See [notebook 03](03_kmp.ipynb#table) and 01."


def test_the_instructors_guide_links_to_notebooks_that_exist_in_the_repository():
    guide = ROOT / "docs" / "instructor.md"
    links = re.findall(r"\]\(([^)#\s]+\.ipynb)", guide.read_text())
    assert links and all((guide.parent / link).resolve().is_file() for link in links), links


def test_a_partial_site_links_only_to_what_it_has(nb_path, tmp_path):
    """--only: the notebook pages, the home page and the extra pages (the instructor's guide) link to the
    notebooks the site has, and name the others as text."""
    from koopman_tut.tooling import site

    guide = tmp_path / "instructor.md"
    guide.write_text("# Guide\n\nStart with [notebook 00](00_synthetic.ipynb), then [07](07_gone.ipynb).\n")
    site._write_source(tmp_path / "site_src", [nb_path], "instructor", [guide])
    assert (tmp_path / "site_src" / "instructor.md").read_text() == (
        "# Guide\n\nStart with [notebook 00](00_synthetic.ipynb), then 07.\n")


def test_a_partial_course_s_notebooks_link_only_to_what_it_has(nb_path, tmp_path):
    """--only: the instructor, student and nbgrader copies name the notebooks left out as text (their links led
    nowhere in the course folder), and keep the links to those it has."""
    nb = nbformat.read(str(nb_path), as_version=4)
    nb.cells.insert(0, new_markdown_cell("See [the limit](05_gone.ipynb#limit) and [this one](00_synthetic.ipynb)."))
    nbformat.write(nb, str(nb_path))
    (tmp_path / "site").mkdir()
    result = course.CourseResult()
    course._copies(nb_path, tmp_path / "out", tmp_path / "site", False, lambda m: None, result, {nb_path.name})
    for copy in (result.instructor[0], result.student[0], *result.nbgrader):
        first = nbformat.read(str(copy), as_version=4).cells[0].source
        assert first == "See the limit and [this one](00_synthetic.ipynb).", copy


def test_title_and_first_paragraph():
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_markdown_cell(
        "# 01 · Title *here*\n\n**What you will learn**\n\n* one\n* two\n\nLater.")])
    assert course.notebook_title(nb) == "01 · Title *here*"
    assert course.first_paragraph(nb) == "* one\n* two"  # the label goes, the list stays a list
    colon = new_notebook(cells=[new_markdown_cell("# T\n\n**What you will learn**\n\nIts two parts:\n\n1. a\n2. b\n\nNo.")])
    assert course.first_paragraph(colon) == "Its two parts:\n\n1. a\n2. b"  # never cut before what a colon announces
    open_ = new_notebook(cells=[new_markdown_cell("# T\n\nTwo runs. This notebook\n\n* explains\n* tests\n\nNo.")])
    assert course.first_paragraph(open_) == "Two runs. This notebook\n\n* explains\n* tests"  # nor mid-sentence
    assert course.notebook_title(new_notebook(), "fallback") == "fallback"


# 4. the command on the real notebooks

def test_course_command_on_the_real_notebooks(tmp_path):
    assert len(NOTEBOOKS) >= 7
    committed = {p: p.read_bytes() for p in NOTEBOOKS}
    exe = Path(sys.executable).with_name("koopman-tut")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "koopman_tut.tooling.cli"]
    out = tmp_path / "OUT"
    proc = subprocess.run([*cmd, "course", str(out), "--no-execute", "--student-repo", "someone/course"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["instructor", "nbgrader", "site", "slides", "student"]
    assert (out / "nbgrader" / "nbgrader_config.py").is_file()
    assert sorted(p.name for p in (out / "nbgrader" / "source").iterdir()) == [p.stem for p in NOTEBOOKS]
    names = [p.name for p in NOTEBOOKS]
    wheels = list((out / "student").glob("koopman_tut-*.whl"))
    assert sorted(p.name for p in (out / "student").iterdir()) == sorted(
        names + ["README.md", "requirements.txt", wheels[0].name])
    assert (out / "student" / "requirements.txt").read_text() == f"./{wheels[0].name}\n"  # for Binder
    assert sorted(p.name for p in (out / "instructor").glob("*.ipynb")) == names
    for flavour in ("student", "instructor"):
        pages = sorted(p.name for p in (out / "site" / flavour).glob("0*.html"))
        assert pages == [n.replace(".ipynb", ".html") for n in names]
        assert all(not is_remote(u) for page in (out / "site" / flavour).glob("*.html") for u in refs(page).loads)
    assert sorted(p.name for p in (out / "slides").glob("*.slides.html")) == [n.replace(".ipynb", ".slides.html")
                                                                            for n in names]
    import zipfile

    members = zipfile.ZipFile(wheels[0]).namelist()
    assert "koopman_tut/tooling/checks/__init__.py" in members and "koopman_tut/tooling/static/reveal.js/dist/reveal.js" in members
    assert not [m for m in members if m.endswith(".ipynb")], "the wheel carries no notebook (no solution)"
    readme = (out / "student" / "README.md").read_text()
    assert wheels[0].name in readme and "colab.research.google.com/github/someone/course" in readme
    had_solutions = False
    for p in NOTEBOOKS:
        assert (out / "instructor" / p.name).read_bytes() == committed[p], "instructor = committed notebook"
        nb = nbformat.reads(committed[p].decode(), as_version=4)
        student = nbformat.read(str(out / "student" / p.name), as_version=4)
        had_solutions |= any(course.is_solution(c) for c in nb.cells)
        assert not any(course.is_solution(c) for c in student.cells)
        assert all(not c.outputs for c in student.cells if c.cell_type == "code" and course.is_exercise(c))
        answers = {nb.cells[i].source for i in answer_cells(nb.cells)}  # a prompt's reveal, what follows, verdicts
        assert answers and all(not c.outputs for c in student.cells if c.source in answers)
        assert all(not c.outputs for c in student.cells if course.has_tag(c, "check") or course.has_tag(c, "reveal"))
        folded = [c.source for c in student.cells if c.source.startswith(f"<details><summary><b>{READING}</b>")]
        for i, n in answer_prose(nb.cells).items():  # the Reading under a reveal: in a fold, nowhere open
            text = split_prose(nb.cells[i].source, n)[0]
            assert any(text in f for f in folded) and not any(text in c.source for c in student.cells
                                                               if c.source not in folded), (p.stem, i)
        from koopman_tut.tooling.copies import relative_paths
        from koopman_tut.tooling.site_pages import widget_note

        relative_paths(nb)  # the clone's folders cut from warnings (test_student_copies_do_not_name_...)
        assert str(ROOT) not in json.dumps(student["cells"])
        kept = [c for c in nb.cells if c.cell_type == "code" and not course.is_solution(c) and not course.is_exercise(c)
                and not course.has_tag(c, "check") and c.source not in answers]

        note = widget_note()
        assert [c.outputs for c in student.cells if c.cell_type == "code" and not course.is_exercise(c)
                and not course.has_tag(c, "check") and c.source not in answers] == \
            [[note if course.WIDGET_VIEW in o.get("data", {}) else o for o in c.outputs] for c in kept], \
            "other outputs (figures, tables) kept; widget views, whose state is not handed out, as a note"
    assert had_solutions, "the tutorial's exercises have solutions to strip"
    index = (out / "site" / "student" / "index.html").read_text()
    linked = list(dict.fromkeys(re.findall(r'href="(0[^"#]+\.html)', index)))
    assert linked == [n.replace(".ipynb", ".html") for n in names], "the home page lists the notebooks in order"
    assert {p: p.read_bytes() for p in NOTEBOOKS} == committed, "notebooks/ untouched"


def test_course_command_refuses_to_write_into_notebooks(capsys):
    from koopman_tut.tooling import cli

    assert cli.main(["course", str(ROOT / "notebooks" / "course"), "--no-execute"]) == 2
    assert "inside" in capsys.readouterr().err
    assert not (ROOT / "notebooks" / "course").exists()


@pytest.mark.parametrize("outdir", ["", "  "])
def test_course_refuses_an_empty_outdir(outdir, tmp_path, monkeypatch, capsys):
    """'' is what an unset shell variable gives: the current folder, whose student/ --force would clear."""
    from koopman_tut.tooling import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "mywork.txt").write_text("mine")
    assert cli.main(["course", outdir, "--force", "--no-execute"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert (tmp_path / "student" / "mywork.txt").read_text() == "mine"


# 5. the course folder: never over a student's work, no stale files, no traceback

@pytest.fixture
def course_cli(nb_path, tmp_path, monkeypatch):
    """``koopman-tut course`` in-process on the synthetic notebook (copied, not executed)."""
    from koopman_tut.tooling import cli

    monkeypatch.setenv("KOOPMAN_TUT_NOTEBOOKS", str(nb_path.parent))
    return lambda out, *args: cli.main(["course", str(out), "--no-execute", *args])


@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupted_course_build_leaves_no_partial_folders(course_cli, tmp_path, capsys, monkeypatch, existing):
    """Ctrl-C during a build: no traceback, the partial course folders removed (so a plain rerun can
    start), a new OUTDIR removed, anything of the instructor's in an existing one kept."""
    from koopman_tut.tooling import course as course_mod

    real = course_mod._copies

    def interrupted(src, out_dir, *args):
        real(src, out_dir, *args)  # the first notebook's copies are written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(course_mod, "_copies", interrupted)
    out = tmp_path / "OUT"
    if existing:
        out.mkdir()
        (out / "notes.txt").write_text("the instructor's")
    assert course_cli(out, *(["--force"] if existing else [])) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in out.rglob("*")) == (["notes.txt"] if existing else [])
    assert out.exists() == existing
    monkeypatch.setattr(course_mod, "_copies", real)
    assert course_cli(out, *(["--force"] if existing else [])) == 0


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
             out / "instructor" / ".00_x.kt-tmp-1.ipynb", out / "slides" / "99_old.slides.html"]
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
    assert sorted(p.name for p in (out / "student").iterdir()) == ["00_synthetic.ipynb", "README.md"]
    # a course folder that is a link is removed as a link: what it points to stays
    (out / "site").rename(tmp_path / "old_site")
    (out / "site").symlink_to(elsewhere)
    assert course_cli(out, "--force") == 0
    assert (elsewhere / "keep.txt").read_text() == "kept" and not (out / "site").is_symlink()


@pytest.mark.parametrize("repo", ["not-a-repo", "a/b/c", "/name@main", ""])  # '' was taken as no links
def test_a_bad_student_repo_is_refused_before_the_folder_is_touched(course_cli, tmp_path, capsys, repo):
    """--force with a malformed --student-repo: a usage error, and the earlier course folders (a
    student's work among them) are still there."""
    out = tmp_path / "OUT"
    work = out / "student" / "my_answers.ipynb"
    work.parent.mkdir(parents=True)
    work.write_text("a student's answers")
    (out / "instructor").mkdir()
    assert course_cli(out, "--force", "--student-repo", repo) == 2
    err = capsys.readouterr().err
    assert "--student-repo must be 'owner/name'" in err and repr(repo) in err and "Traceback" not in err
    assert work.read_text() == "a student's answers" and sorted(p.name for p in out.iterdir()) == [
        "instructor", "student"]
    with pytest.raises(TypeError, match="student_repo must be a str"):
        course.check_student_repo(["owner/name"])


@pytest.mark.parametrize("make", ["file", "parent is a file"])
def test_course_folder_that_is_a_file(course_cli, tmp_path, capsys, make):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if make == "file" else blocker / "OUT"
    assert course_cli(out) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and ("is a file" in err or "Not a directory" in err) and "Traceback" not in err
    assert "OUTDIR" in err  # said only "[Errno 20] Not a directory" under a file
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


def test_display_math_gets_a_paragraph_of_its_own():
    """JupyterLab renders $$...$$ right after a line of text; MyST needs it as its own paragraph
    (or prints stray dollars): the site's copy adds blank lines, keeping list indentation."""
    from koopman_tut.tooling.site import display_math_paragraphs as paragraphs

    assert paragraphs("so\n$$a = b$$\nand") == "so\n\n$$a = b$$\n\nand"
    assert paragraphs("1. item\n   $$x$$\n   more") == "1. item\n\n   $$x$$\n\n   more"
    assert paragraphs("$$\nx\n= y$$ where\nz") == "$$\nx\n= y$$\n\nwhere\nz"
    for same in ("inline $$x$$ stays", "no math\n", "$$x$$", "a\n\n$$x$$\n\nb", "$$ never closed\nx"):
        assert paragraphs(same) == same


def test_a_reveals_answer_runs_to_the_end_of_its_section():
    """Past readings and code samples in markdown, up to the next level-1/2 heading, prompt or exercise."""
    reveal = new_code_cell("1", metadata={"tags": ["reveal"]})
    cells = [reveal, new_markdown_cell("Reading.\n\n```python\n# a comment, not a heading\n```"), new_code_cell("2"),
             new_markdown_cell("### A subsection"), new_code_cell("3"), new_markdown_cell("## Next section"),
             new_code_cell("4"), new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(True)")]
    assert answer_cells(cells) == {0, 2, 4, 7}


def test_the_prose_that_answers_a_prompt_is_folded_in_every_copy():
    """A reveal's "Reading" states the answer in words: whole cells after the reveal, and the part before the
    next heading or prompt of a cell that holds both, are folded in the student notebook, the nbgrader
    source and the student site; the heading, the next prompt and the prose before any reveal stay open."""
    from koopman_tut.tooling.copies import nbgrader_copy, student_copy
    from koopman_tut.tooling.site_pages import site_notebook

    cells = [new_markdown_cell("Intro, open."),
             new_markdown_cell("**Predict first:** will it rise?", metadata={"tags": ["predict"]}),
             new_code_cell("1", metadata={"tags": ["reveal"]}), new_markdown_cell("It rises, by 3."),
             new_code_cell("2"), new_markdown_cell("**Reading.** Yes, it rose.\n\n## Next section\n\nNew text."),
             new_markdown_cell("Open again."),
             new_markdown_cell("**Predict first:** and now?", metadata={"tags": ["predict"]}),
             new_code_cell("3", metadata={"tags": ["reveal"]}),
             new_markdown_cell("It falls.\n\n**Predict first:** last one?", metadata={"tags": ["predict"]}),
             new_code_cell("4", metadata={"tags": ["reveal"]})]
    assert answer_prose(cells) == {3: len(cells[3].source), 5: cells[5].source.index("## Next"),
                                   9: cells[9].source.index("**Predict first")}
    nb = nbformat.v4.new_notebook(cells=cells)
    for copy in (student_copy(nb), nbgrader_copy(nb)):
        text = [c.source for c in copy.cells if c.cell_type == "markdown"]
        fold = f"<details><summary><b>{READING}</b></summary>"
        for answer in ("It rises, by 3.", "**Reading.** Yes, it rose.", "It falls."):
            assert [t for t in text if answer in t] == [f"{fold}\n\n{answer}\n\n</details>"]
        for open_text in ("Intro, open.", "## Next section\n\nNew text.", "Open again.", "**Predict first:** last one?"):
            assert open_text in text, open_text
    site = site_notebook(student_copy(nb, clear_reveals=False), "student")
    text = [c.source for c in site.cells if c.cell_type == "markdown"]
    for answer in ("It rises, by 3.", "**Reading.** Yes, it rose.", "It falls."):
        (hit,) = [t for t in text if answer in t]
        assert hit.startswith(":::{dropdown} " + READING) or hit.startswith("::::{dropdown} " + READING), hit
    assert any(t.startswith("## Next section") for t in text) and "Open again." in text


def test_search_setup_teaches_an_older_sphinx_the_no_search_class(monkeypatch):
    """Sphinx reads the no-search class from 8.2 on (the last Sphinx for Python 3.10 is 8.1): on an older one,
    the student site's setup adds the skip, so its folded outputs stay out of the index there too."""
    import sphinx
    import sphinx.search
    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    from koopman_tut.tooling import site_pages

    def indexes_everything(self, node):  # an older Sphinx's collector: every text node's words
        if isinstance(node, nodes.Text):
            self.found_words.extend(node.astext().split())

    monkeypatch.setattr(sphinx.search.WordCollector, "dispatch_visit", indexes_everything)
    monkeypatch.setattr(sphinx, "version_info", (8, 1, 3, "final", 0))
    doc = new_document("page", get_default_settings(Parser))
    doc += nodes.paragraph(text="shown"), nodes.container("", nodes.paragraph(text="folded"), classes=["no-search"])

    def words() -> list[str]:
        collector = sphinx.search.WordCollector(doc, sphinx.search.SearchLanguage(None))
        doc.walk(collector)
        return collector.found_words

    assert words() == ["shown", "folded"]
    connected = []
    site_pages.search_setup(type("App", (), {"connect": lambda self, *a: connected.append(a)})())
    assert words() == ["shown"] and connected == [("doctree-read", site_pages.fold_out_of_search)]


def test_force_keeps_the_instructors_nbgrader_work(course_cli, tmp_path, capsys):
    """--force rebuilds nbgrader/source/ and the config, and keeps what nbgrader and the instructor made
    there (a mid-term rebuild lost every grade and submission); also when the rebuild is interrupted."""
    out = tmp_path / "OUT"
    assert course_cli(out) == 0
    nbg = out / "nbgrader"
    mine = [nbg / "gradebook.db", nbg / "submitted" / "alice" / "00_synthetic" / "00_synthetic.ipynb",
            nbg / "release" / "00_synthetic" / "00_synthetic.ipynb", nbg / "feedback" / "alice" / "x.html"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the instructor's")
    stale = nbg / "source" / "99_old" / "99_old.ipynb"
    stale.parent.mkdir()
    stale.write_text("stale")
    (nbg / "nbgrader_config.py").write_text("old")
    capsys.readouterr()
    assert course_cli(out, "--force") == 0
    assert "kept in" in capsys.readouterr().out
    assert all(p.read_text() == "the instructor's" for p in mine) and not stale.exists()
    assert "get_config" in (nbg / "nbgrader_config.py").read_text()
    assert sorted(p.name for p in (nbg / "source").iterdir()) == ["00_synthetic"]
    assert course.remove_course_folders(out) == sorted(nbg.iterdir())  # what an interrupted build removes
    assert all(p.read_text() == "the instructor's" for p in mine) and not (nbg / "source").exists()
    for path in mine:
        path.unlink()
    for path in sorted(nbg.rglob("*"), reverse=True):
        path.rmdir()
    assert course.remove_course_folders(out, remove_empty=True) == [] and not out.exists()
