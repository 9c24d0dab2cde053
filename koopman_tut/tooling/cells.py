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
