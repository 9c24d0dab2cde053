"""What a notebook's study needs of its parameters taken together, checked before any kernel starts.

:mod:`.nb_params` checks each ``-p`` value on its own (a type, a range). Some values are fine alone
and still cannot run: notebook 07 compares narrow with wide networks, so one width leaves nothing
to compare; the seed intervals of 03-07 need two seeds or more; 05's windows must fit on one
training path before its final step; 02's window must hold three snapshots. Each rule here names
the parameters and what the study needs.
A run with ``SMOKE = True`` is not checked: the notebook sets its own small values then.
"""
from __future__ import annotations

from pathlib import Path

from ..numerics.equivalence import T_STEPS as _RUN_STEPS  # NumPy only: no torch before a kernel starts


def _seed_count(seeds) -> int:
    return seeds if isinstance(seeds, int) else len(seeds)


def _starts_problem(v: dict) -> str | None:
    from ..training.experiments import check_starts  # the rule prediction_study applies

    try:
        check_starts(v["STARTS"], v["WINDOW"], v["FINAL_STEPS"])
    except (TypeError, ValueError) as e:
        return f"STARTS={list(v['STARTS'])}, WINDOW={v['WINDOW']}, FINAL_STEPS={v['FINAL_STEPS']}: {e}"
    return None


# notebook number ("*": every notebook) -> [(parameters read, problem or None)]
RULES = {
    "*": [(("COMPRESSION",), lambda v: None if v["COMPRESSION"] > 1 else
           f"COMPRESSION {v['COMPRESSION']!r} prunes nothing (1 is the dense network): it needs a compression above 1"),
          (("COMPRESSIONS",), lambda v: None if any(c > 1 for c in v["COMPRESSIONS"]) else
           f"COMPRESSIONS {list(v['COMPRESSIONS'])} needs a compression above 1 (1 is the dense network)")],
    "02": [(("WINDOW", "EVERY"), lambda v: None if v["WINDOW"] // v["EVERY"] >= 2 else
            f"WINDOW={v['WINDOW']}, EVERY={v['EVERY']} records {v['WINDOW'] // v['EVERY'] + 1} snapshot(s): a Koopman "
            f"analysis needs at least 3 (WINDOW // EVERY >= 2)")],
    "05": [(("STARTS", "WINDOW", "FINAL_STEPS"), _starts_problem)],
    "07": [(("WIDTHS",), lambda v: None if len(set(v["WIDTHS"])) >= 2 else
            f"WIDTHS {list(v['WIDTHS'])} needs at least 2 different widths: section 4 compares narrow with wide"),
           (("DELAYS",), lambda v: None if v["DELAYS"] <= _RUN_STEPS - 2 else
            f"DELAYS {v['DELAYS']} leaves no pairs: the optimizer example's runs have {_RUN_STEPS} steps, so at most "
            f"{_RUN_STEPS - 2} delays")],
}
for _nb in ("03", "04", "05", "06", "07"):  # intervals over seeds (03: its control): one seed has none
    RULES.setdefault(_nb, []).append((("SEEDS",), lambda v: None if _seed_count(v["SEEDS"]) >= 2 else
                                      f"SEEDS={v['SEEDS']!r} gives one seed: the study's intervals over seeds need 2 or more"))


def study_problems(values: dict[Path, dict], given: dict[Path, set]) -> list[str]:
    """One message per rule broken, for each notebook path whose ``values`` (its defaults with the
    run's parameters over them) break a rule that reads a parameter the run sets (``given``)."""
    errors: dict[str, list[str]] = {}
    for path, v in values.items():
        if v.get("SMOKE") is True:
            continue
        for names, problem in RULES["*"] + RULES.get(Path(path).stem[:2], []):
            if set(names) <= set(v) and set(names) & given[path]:
                msg = problem(v)
                if msg:
                    errors.setdefault(msg, []).append(Path(path).stem)
    return [f"{msg} (in {', '.join(stems)})" for msg, stems in errors.items()]
