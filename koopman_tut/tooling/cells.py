"""What a tutorial cell is: an exercise, a solution, or markdown with a solution in a <details> block."""
from __future__ import annotations

import re

from nbformat import NotebookNode

EXERCISE_TAG = "exercise"
SOLUTION_TAGS = frozenset({"solution", "solutions"})


def _tags(cell: NotebookNode) -> list[str]:
    return [str(t) for t in cell.get("metadata", {}).get("tags", [])]


def is_solution(cell: NotebookNode) -> bool:
    """True if ``cell`` is tagged ``solution`` (or ``solutions``)."""
    return any(t.lower() in SOLUTION_TAGS for t in _tags(cell))


def is_exercise(cell: NotebookNode) -> bool:
    """True if ``cell`` is tagged ``exercise``."""
    return any(t.lower() == EXERCISE_TAG for t in _tags(cell))


_DETAILS_TAG = re.compile(r"<(/?)details\b[^>]*>", re.IGNORECASE)
_SUMMARY = re.compile(r"\s*<summary\b[^>]*>(.*?)</summary\s*>", re.IGNORECASE | re.DOTALL)


def strip_solution_details(text: str) -> str:
    """Remove every ``<details>`` block whose ``<summary>`` mentions "solution".

    Parameters
    ----------
    text : str
        Markdown source.

    Returns
    -------
    str
        ``text`` without those blocks (nested ones included). Other ``<details>`` blocks,
        e.g. hints, stay. A solution block that is never closed is cut to the end of the
        text, so a malformed cell never leaks its solution.
    """
    spans: list[tuple[int, int]] = []
    stack: list[tuple[int, int]] = []  # (start of <details ...>, end of it)
    for m in _DETAILS_TAG.finditer(text):
        if not m.group(1):
            stack.append((m.start(), m.end()))
        elif stack:
            start, body = stack.pop()
            summary = _SUMMARY.match(text, body)
            if summary and "solution" in summary.group(1).lower():
                spans.append((start, m.end()))
    for start, body in stack:  # unclosed
        summary = _SUMMARY.match(text, body)
        if summary and "solution" in summary.group(1).lower():
            spans.append((start, len(text)))
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:  # inside a block already removed
            continue
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip("\n")


# --- exercises that answer back, predictions before answers ------------------------------
#
# An exercise "NN.k" is a run of cells that all carry metadata koopman_tut.exercise = "NN.k":
#   markdown (tag exercise)   the prompt, saying what `answer` should be
#   code     (tag exercise)   ends in `answer = ...`; nbgrader: the student's solution cell
#   markdown (tag solution)   the worked answer (instructor copy only)
#   code     (tag solution)   sets `answer` and prints the answer in words, from computed values
#   code     (tag check)      check("NN.k", answer, ...); nbgrader: a locked, graded test cell
# A "Predict first" prompt is a markdown cell tagged predict, followed at once by the code cell
# (tagged reveal) that shows the answer. Student copies clear that cell's output (and those of
# answer_cells) and put "Your prediction:" before it.

CHECK_TAG = "check"
PREDICT_TAG = "predict"
REVEAL_TAG = "reveal"
NBGRADER_SCHEMA = 3


def answer_cells(cells: list[NotebookNode]) -> set[int]:
    """Indices of the code cells whose outputs give answers away before the student works them out:
    each "Predict first" reveal cell and every code cell after it in its section (up to the next
    heading of level 1 or 2, the next prompt or exercise: the tables, figures and widgets that follow
    a reveal show the same answer), and every cell that prints the verdicts of the notebook's checked
    claims (``# NBVAL_CHECK_OUTPUT``), prompt or not. Student copies clear their outputs (and their
    figure captions); the student website folds them."""
    return _answers(cells)[0]


def answer_prose(cells: list[NotebookNode]) -> dict[int, int]:
    """{markdown cell index: how many leading characters of its source answer a "Predict first" prompt}.

    The prose in a reveal's section after it (as :func:`answer_cells` reads the section), the
    "Reading" that says in words what the reveal shows: whole cells, and the part before the
    heading (level 1 or 2) or the new prompt of the cell that ends the section, where one cell holds
    both. Student copies fold that text (:func:`split_prose`)."""
    return _answers(cells)[1]


READING = "After your prediction: what the results above say"  # the title of folded prose


def split_prose(source: str, n: int) -> tuple[str, str]:
    """(the first ``n`` characters of ``source``, the rest), each without surrounding blank lines."""
    return source[:n].strip("\n"), source[n:].strip("\n")


def _answers(cells: list[NotebookNode]) -> tuple[set[int], dict[int, int]]:
    code, prose, after_reveal = set(), {}, False
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            start = _answer_end(cell)
            if after_reveal and cell.cell_type == "markdown" and cell.source[:start].strip():
                prose[i] = start
            if start < len(cell.source):
                after_reveal = False
            continue
        after_reveal = after_reveal or has_tag(cell, REVEAL_TAG)
        if after_reveal or is_verdict(cell):
            code.add(i)
    return code, prose


def is_verdict(cell: NotebookNode) -> bool:
    """Whether a code cell prints the verdicts of the notebook's checked claims (``# NBVAL_CHECK_OUTPUT``): its
    asserts and labels state the answers to the "Predict first" prompts, so student copies hide its source too."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# NBVAL_CHECK_OUTPUT")


def _answer_end(cell: NotebookNode) -> int:
    """Where in a cell's source what a reveal's answer does not cover starts (its length: nowhere): a
    heading of level 1 or 2, a new prompt ("**Predict first" in a cell tagged predict: from its start
    otherwise), an exercise (the whole cell)."""
    if has_tag(cell, EXERCISE_TAG):
        return 0
    end = len(cell.source)
    if has_tag(cell, PREDICT_TAG):
        end = max(0, cell.source.find("**Predict first"))
    fenced, pos = False, 0
    for line in cell.source.splitlines(keepends=True):
        fenced ^= line.lstrip().startswith(("```", "~~~"))  # a '# comment' in a code block is no heading
        if not fenced and line.startswith(("# ", "## ")):
            return min(pos, end)
        pos += len(line)
    return end


def has_tag(cell: NotebookNode, tag: str) -> bool:
    """True if ``cell`` carries ``tag`` (case-insensitive)."""
    return any(t.lower() == tag for t in _tags(cell))


def exercise_id(cell: NotebookNode) -> str | None:
    """The exercise ("03.1") a cell belongs to, from ``metadata.koopman_tut.exercise``."""
    return cell.get("metadata", {}).get("koopman_tut", {}).get("exercise")


def solution_code(nb: NotebookNode) -> dict[str, str]:
    """{exercise id: the source of its solution code cells, joined}: what a student's exercise cell
    would hold with the solution pasted in (the nbgrader source copy and the tests use it)."""
    out: dict[str, list[str]] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and is_solution(cell):
            out.setdefault(exercise_id(cell), []).append(cell.source.rstrip())
    return {eid: "\n".join(sources) for eid, sources in out.items()}


def nbgrader_metadata(exercise: str, role: str, points: int = 1) -> dict:
    """nbgrader cell metadata (schema 3) for an exercise's answer cell (``role="answer"``) or its
    check cell (``role="check"``), so ``nbgrader autograde`` scores the check cells."""
    gid = "ex" + exercise.replace(".", "-")
    if role == "answer":
        return {"grade": False, "grade_id": gid, "locked": False, "schema_version": NBGRADER_SCHEMA,
                "solution": True, "task": False}
    if role == "check":
        return {"grade": True, "grade_id": gid + "-check", "locked": True, "points": points,
                "schema_version": NBGRADER_SCHEMA, "solution": False, "task": False}
    raise ValueError(f"role must be 'answer' or 'check', got {role!r}")


def exercise_problems(nb: NotebookNode) -> list[str]:
    """What breaks the exercise and prediction conventions above in ``nb`` (empty: none)."""
    problems: list[str] = []
    cells = nb.cells
    ids = []
    for i, c in enumerate(cells):
        if (is_exercise(c) or is_solution(c) or has_tag(c, CHECK_TAG)) and not exercise_id(c):
            problems.append(f"cell {i}: exercise/solution/check cell without metadata koopman_tut.exercise")
        eid = exercise_id(c)
        if eid and eid not in ids:
            ids.append(eid)
    for eid in ids:
        run = [(i, c) for i, c in enumerate(cells) if exercise_id(c) == eid]
        idx = [i for i, _ in run]
        if idx != list(range(idx[0], idx[-1] + 1)):
            problems.append(f"exercise {eid}: its cells are not contiguous ({idx})")
        roles = []
        for i, c in run:
            role = ("check" if has_tag(c, CHECK_TAG) else "exercise" if is_exercise(c)
                    else "solution" if is_solution(c) else "?")
            roles.append((role, c.cell_type))
        want = [("exercise", "markdown"), ("exercise", "code")]
        if roles[:2] != want:
            problems.append(f"exercise {eid}: starts with {roles[:2]}, expected {want}")
        if roles[-1] != ("check", "code"):
            problems.append(f"exercise {eid}: last cell is {roles[-1]}, expected a code cell tagged check")
        if any(r[0] not in ("solution",) for r in roles[2:-1]) or not any(r == ("solution", "code") for r in roles):
            problems.append(f"exercise {eid}: between the exercise and its check only solution cells, "
                            f"at least one of them code ({roles})")
        code = [c for _, c in run if c.cell_type == "code"]
        ex_code = code[0] if code else None
        if ex_code is not None and not re.search(r"^answer = \.\.\.", ex_code.source, re.MULTILINE):
            problems.append(f"exercise {eid}: the exercise code cell has no line `answer = ...`")
        sols = [c for _, c in run if is_solution(c) and c.cell_type == "code"]
        if sols and not any(re.search(r"^\s*answer\s*=", c.source, re.MULTILINE) for c in sols):
            problems.append(f"exercise {eid}: no solution code cell assigns `answer`")
        chk = run[-1][1]
        if not re.search(rf"check\(\s*['\"]{re.escape(eid)}['\"]\s*,\s*answer\b", chk.source):
            problems.append(f"exercise {eid}: the check cell does not call check({eid!r}, answer, ...)")
        if ex_code is not None and ex_code.metadata.get("nbgrader") != nbgrader_metadata(eid, "answer"):
            problems.append(f"exercise {eid}: exercise code cell lacks nbgrader_metadata({eid!r}, 'answer')")
        if chk.metadata.get("nbgrader", {}).get("grade_id") != nbgrader_metadata(eid, "check")["grade_id"]:
            problems.append(f"exercise {eid}: check cell lacks nbgrader_metadata({eid!r}, 'check')")
    for i, c in enumerate(cells):
        if c.cell_type == "markdown" and "Predict first" in c.source and not has_tag(c, PREDICT_TAG):
            problems.append(f"cell {i}: a 'Predict first' prompt not tagged {PREDICT_TAG}")
        nxt, prev = (cells[i + 1] if i + 1 < len(cells) else None), (cells[i - 1] if i else None)
        if has_tag(c, PREDICT_TAG) and not (nxt is not None and nxt.cell_type == "code" and has_tag(nxt, REVEAL_TAG)):
            problems.append(f"cell {i}: a predict prompt must be followed at once by the code cell that reveals "
                            f"its answer, tagged {REVEAL_TAG}")
        if has_tag(c, REVEAL_TAG) and not (prev is not None and has_tag(prev, PREDICT_TAG)):
            problems.append(f"cell {i}: a reveal cell with no predict prompt right before it")
    return problems
