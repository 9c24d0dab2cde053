"""Notebook parameters for ``koopman-tut run``: read from each ``parameters`` cell, checked before any kernel starts.

Each notebook's ``parameters`` cell is the specification: a ``-p NAME VALUE`` (or a preset's
value) must fit the default written there, by these rules:

* **type** -- the default's type: a bool takes ``True``/``False`` only; an int takes ints
  (not bools, not floats); a float takes ints or floats; a str takes the text as typed
  (``-p DATASET mnist``); a list takes a non-empty list or tuple of its elements' type, and
  is passed on as typed (a tuple stays a tuple); ``INCREASING`` lists (compressions, starts,
  horizons, widths) must be strictly increasing, since a notebook pairs them with its rows of
  results in that order (``[32, 2, 8]`` labelled 32's accuracies as 8's). A parameter whose comment says "or a list"
  (``SEEDS = 5  # ... (or a list of seeds)``) also takes a list of the default's type.
  Other values are Python literals (``ast.literal_eval``); text that is not one is a string.
* **range** -- every int in these notebooks counts something (epochs, steps, snapshots,
  seeds, sizes), so ints are >= 0, and >= ``MINIMUM[name]`` where a notebook needs more (a
  window needs two snapshots for DMD; a size, an epoch count or a seed count needs one);
  seeds are < 2**32 (NumPy's and scikit-learn's range); a comment that says ``at least N`` sets
  a notebook's own least value (04's window: shorter ones cannot resolve momentum, and its claims fail). Floats are finite, > 0 where the
  default is > 0 (learning rates), ``MOMENTUM`` in [0, 1). Compressions are numbers >= 1
  (total / nonzero parameters), ints or floats alike.
* **smoke** -- a notebook run with ``SMOKE = True`` reassigns some sizes in an ``if SMOKE:``
  block; an explicit ``-p`` for one of those names would be silently replaced there, so it is
  refused instead (``smoke_names``).
"""
from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from ..numerics.reals import is_finite

MINIMUM = {"WINDOW": 2, "N_STEPS": 9, "EPOCHS": 1, "BATCH_SIZE": 1, "EVERY": 1, "DIM": 9, "BIG_N": 1,
           "SEEDS": 1, "LR_RATIO": 2, "FINAL_STEPS": 1, "COMPRESSION": 1, "COMPRESSIONS": 1, "HORIZONS": 1,
           "WIDTHS": 1, "WIDTH_EPOCHS": 1, "INITS": 1, "FT_RUNS": 1,
           "FT_STEPS": 2}  # a list's minimum holds for each element
# 01: its quadratic has 8 Hessian eigenvalues and x*, 9 modes: DIM and N_STEPS >= 9 (with 8 DMD finds 8 of them);
# 06: LR / LR_RATIO is a second learning rate, so LR_RATIO = 1 would compare LR with itself;
# 07: FT_STEPS steps give FT_STEPS + 1 snapshots per run, and a spectrum with 1 delay needs 3
INCREASING = {"COMPRESSIONS", "STARTS", "HORIZONS", "WIDTHS"}  # sizes a notebook pairs with its rows in order
NUMBERS = {"COMPRESSION", "COMPRESSIONS"}  # ints in the cell, any real number >= 1 allowed
SEED_LIMIT = 2**32
_AT_LEAST = re.compile(r"\bat least (\d+)\b")  # in a parameter's comment: its least value there (papermill's parser
# reads a comment holding "=" as no parameter at all, so not ">= N")
_NOUNS = {"bool": ("True or False", "bools"), "int": ("an int", "ints"), "number": ("a number", "numbers"),
          "str": ("a string", "strings"), "any": ("a Python literal", "Python literals")}


@dataclass(frozen=True)
class Rule:
    """What a parameter accepts: ``kind`` ("bool", "int", "number", "str", "list" or "any"),
    inclusive ``low``, exclusive ``high``, ``positive`` (> 0), the elements' rule ``item`` of
    a list, and an ``alternative`` rule that is accepted as well."""

    kind: str
    low: float | None = None
    high: float | None = None
    positive: bool = False
    item: Rule | None = None
    alternative: Rule | None = None
    distinct: bool = False  # a list's elements: no repeats (seeds: a repeat counts one run twice)
    increasing: bool = False  # a list's elements: strictly increasing (sizes a notebook pairs with rows in order)

    def accepts(self, value) -> bool:
        if self.alternative is not None and self.alternative.accepts(value):
            return True
        if self.kind in ("any", "str", "bool"):
            return self.kind == "any" or isinstance(value, str if self.kind == "str" else bool)
        if self.kind == "list":
            return (isinstance(value, (list, tuple)) and len(value) > 0 and all(map(self.item.accepts, value))
                    and (not self.distinct or len(set(value)) == len(value))
                    and (not self.increasing or all(a < b for a, b in zip(value, value[1:]))))
        if isinstance(value, bool) or not isinstance(value, int if self.kind == "int" else (int, float)):
            return False
        return (is_finite(value) and (self.low is None or value >= self.low)
                and (self.high is None or value < self.high) and (not self.positive or value > 0))

    def describe(self, plural: bool = False) -> str:
        """``"an int >= 1"``, ``"a list of numbers >= 1 (or a tuple)"``, ..."""
        if self.kind == "list":
            text = (f"{'lists' if plural else 'a list'} of {'distinct ' * self.distinct}"
                    f"{self.item.describe(plural=True)}{', in increasing order' * self.increasing} (or a tuple)")
        else:
            high = "2**32" if self.high == SEED_LIMIT else format(self.high or 0, "g")
            bounds = ["> 0" if self.positive else f">= {self.low:g}" if self.low is not None else "",
                      f"< {high}" if self.high is not None else ""]
            text = " ".join([_NOUNS[self.kind][plural], " and ".join(b for b in bounds if b)]).strip()
        return f"{text} or {self.alternative.describe(plural)}" if self.alternative else text


def rule_for(name: str, default, help: str = "") -> Rule:
    """The :class:`Rule` of parameter ``name`` from its default and comment (see the module docstring)."""
    if isinstance(default, (list, tuple)):
        sample = next((x for x in default if isinstance(x, float)), default[0]) if default else None
        return Rule("list", item=rule_for(name, sample), increasing=name in INCREASING)
    if isinstance(default, bool):
        rule = Rule("bool")
    elif name in NUMBERS and isinstance(default, (int, float)):
        rule = Rule("number", MINIMUM.get(name, 0))
    elif isinstance(default, int):
        rule = Rule("int", MINIMUM.get(name, 0), SEED_LIMIT if name == "SEED" else None)
    elif isinstance(default, float):
        rule = (Rule("number", 0.0, 1.0) if name == "MOMENTUM" else
                Rule("number", 0.0, positive=True) if default > 0 else Rule("number"))
    else:
        rule = Rule("str" if isinstance(default, str) else "any")
    least = _AT_LEAST.search(help)  # a notebook's own minimum, stated in the comment: "(at least 10 for the claims)"
    if least and rule.kind in ("int", "number"):
        n = int(least.group(1))
        rule = Rule(rule.kind, max(rule.low or 0, n), rule.high, rule.positive and n == 0)  # >= n > 0: positive
    if "or a list" in help and rule.kind != "list":
        item = Rule("int", 0, SEED_LIMIT) if name == "SEEDS" else rule
        rule = Rule(rule.kind, rule.low, rule.high, rule.positive,
                    alternative=Rule("list", item=item, distinct=name == "SEEDS"))
    return rule


def parse(text: str, rule: Rule):
    """A -p value as typed: a Python literal, or the text itself (always the text for a string rule)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    return text if rule.kind == "str" and not isinstance(value, str) else value


@dataclass
class NotebookParameters:
    """A notebook's parameters: ``defaults`` and ``rules`` by name, in the cell's order, and
    ``smoke_names``: the parameters its ``if SMOKE:`` blocks reassign."""

    defaults: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    smoke_names: set = field(default_factory=set)


def _comments(source: str) -> dict[int, str]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return {}
    return {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}


def _assigned(tree: ast.AST) -> set[str]:
    """Names assigned (also as tuple targets) anywhere under the ``if SMOKE:`` blocks of ``tree``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(isinstance(n, ast.Name) and n.id == "SMOKE" for n in ast.walk(node.test)):
            for sub in (n for stmt in node.body for n in ast.walk(stmt)):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def read_parameters(path: Path) -> NotebookParameters:
    """Parse ``path`` (JSON, no kernel): its ``parameters`` cell's literal assignments and smoke names."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    out, smoke = NotebookParameters(), set()
    for cell in (c for c in cells if c.get("cell_type") == "code"):
        source = "".join(cell.get("source", ""))
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython magics: such a cell holds neither parameters nor a smoke block
            continue
        smoke |= _assigned(tree)
        if "parameters" not in cell.get("metadata", {}).get("tags", []) or out.defaults:
            continue
        comments = _comments(source)
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
                node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None)
            if isinstance(target, ast.Name):
                try:
                    default = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue  # not a literal: papermill cannot set it either
                name = target.id
                out.defaults[name] = default
                out.rules[name] = rule_for(name, default, comments.get(node.lineno, ""))
    out.smoke_names = smoke & set(out.defaults)
    return out


def _problem(name: str, value, rule: Rule, text: str | None) -> str:
    said = f"-p {name} {text}" if text is not None else f"{name} = {value!r}"
    note = " ('{}' is not a Python literal)".format(text) if isinstance(value, str) and rule.kind not in (
        "str", "any") and text is not None and parse(text, Rule("any")) == text else ""
    return f"{name}: {said} is not {rule.describe()}{note}"


def plan(specs: dict, preset: dict, texts: dict[str, str], preset_name: str = "default") -> tuple[dict, list[str]]:
    """Each notebook's parameters and every error in them, found before anything runs.

    Parameters
    ----------
    specs : dict
        Path -> :class:`NotebookParameters` of each selected notebook.
    preset, texts : dict
        The preset's values; the ``-p NAME VALUE`` pairs as typed (an explicit ``-p`` always wins).
    preset_name : str
        Named in messages about the preset's values.

    Returns
    -------
    (dict, list of str)
        Path -> {name: value} restricted to the names each notebook declares; one message per
        error (naming the parameter, the value, what was expected and the notebooks).
    """
    plans, errors = {}, {}
    for path, spec in specs.items():
        given = {n: (v, None) for n, v in preset.items() if n in spec.rules and n not in texts}
        given.update({n: (parse(t, spec.rules[n]), t) for n, t in texts.items() if n in spec.rules})
        for name, (value, text) in given.items():
            if not spec.rules[name].accepts(value):
                msg = _problem(name, value, spec.rules[name], text)
                errors.setdefault(msg + ("" if text is not None else f" (--preset {preset_name})"), []).append(path)
        smoke_on = given.get("SMOKE", (spec.defaults.get("SMOKE"), None))[0] is True
        clash = [n for n in texts if n in spec.smoke_names] if smoke_on else []
        if clash:
            why = f"-p SMOKE {texts['SMOKE']}" if "SMOKE" in texts else f"--preset {preset_name}"
            errors.setdefault(
                f"{', '.join(clash)}: -p {' / '.join(clash)} would be overridden: with SMOKE = True ({why}) the "
                f"notebook sets {', '.join(sorted(spec.smoke_names))} itself; drop -p {' / '.join(clash)} "
                f"or run without SMOKE", []).append(path)
        plans[path] = {n: given[n][0] for n in spec.defaults if n in given}  # in the cell's order
    return plans, [f"{msg} (in {', '.join(Path(p).stem for p in paths)})" for msg, paths in errors.items()]
