"""What ``koopman-tut run`` checks against the package itself before any kernel starts.

A notebook's DATASET and MODEL must be names the package knows, MODEL must take DATASET's
samples (each model's input shape, :data:`koopman_tut.training.models.INPUT_SHAPE`, against
each dataset's sample shape, :data:`koopman_tut.training.data.SAMPLE_SHAPE`; MODEL ``"auto"``
is the dataset's default), and DEVICE must be a form the training loop takes and a device this
machine has (:func:`koopman_tut.training.train.device_problem`). The types and ranges of the
values come from each notebook's parameters cell instead (:mod:`.nb_params`).

koopman_tut.training is imported only when a notebook declares one of these parameters (it
imports torch).
"""
from __future__ import annotations


def valid_choices(names) -> dict[str, list[str]]:
    """Allowed values of the DATASET and MODEL parameters among ``names``.

    Imported lazily from koopman_tut.training.data and koopman_tut.training.models (they import torch);
    MODEL ``"auto"`` means the dataset's default model (experiments.setup).
    """
    choices = {}
    if "DATASET" in names:
        from koopman_tut.training.data import DATASETS

        choices["DATASET"] = list(DATASETS)
    if "MODEL" in names:
        from koopman_tut.training.models import MODELS

        choices["MODEL"] = ["auto", *MODELS]
    return choices


def _strings(plans: dict, name: str) -> dict[str, list[str]]:
    """value -> the notebooks (stems) whose ``name`` is that string."""
    found = {}
    for path, params in plans.items():
        if isinstance(params.get(name), str):
            found.setdefault(params[name], []).append(path.stem)
    return found


def _misfits(plans: dict, valid: dict[str, list[str]]) -> list[str]:
    """A message per (MODEL, DATASET) pair of known names where the model cannot take the samples."""
    from koopman_tut.training.data import SAMPLE_SHAPE
    from koopman_tut.training.models import DEFAULT_MODEL, INPUT_SHAPE, accepts

    pairs = {}
    for path, params in plans.items():
        dataset, model = params.get("DATASET"), params.get("MODEL")
        if dataset in valid["DATASET"] and model in valid["MODEL"]:
            pairs.setdefault((DEFAULT_MODEL[dataset] if model == "auto" else model, dataset), []).append(path.stem)
    errors = []
    for (model, dataset), stems in pairs.items():
        if not accepts(model, SAMPLE_SHAPE[dataset]):
            fits = [m for m in INPUT_SHAPE if accepts(m, SAMPLE_SHAPE[dataset])]
            errors.append(f"MODEL {model!r} does not fit DATASET {dataset!r} ({', '.join(stems)}): it takes inputs "
                          f"of shape {INPUT_SHAPE[model]}, {dataset} images are {SAMPLE_SHAPE[dataset]}; "
                          f"for {dataset} use MODEL auto or {' or '.join(fits)}")
    return errors


def package_problems(plans: dict) -> list[str]:
    """One message per DATASET, MODEL or DEVICE value that cannot work, found without a kernel.

    Parameters
    ----------
    plans : dict
        Path -> every parameter a notebook will run with: its defaults, with the preset's and the
        -p values over them (a MODEL set alone meets the notebook's default DATASET).

    Returns
    -------
    list of str
        An unknown DATASET or MODEL; a MODEL that does not take its DATASET's samples (with the
        notebooks it is in); a DEVICE of another form, or one this machine does not have.
    """
    values = {name: _strings(plans, name) for name in ("DATASET", "MODEL", "DEVICE")}
    errors = []
    valid = valid_choices({name for name in ("DATASET", "MODEL") if values[name]})
    for name, allowed in valid.items():
        errors += [f"{name} {bad!r} is not one of {', '.join(allowed)}" for bad in values[name] if bad not in allowed]
    if len(valid) == 2:
        errors += _misfits(plans, valid)
    if any(device != "auto" for device in values["DEVICE"]):
        from koopman_tut.training.train import device_problem

        errors += [f"DEVICE {problem}" for problem in map(device_problem, values["DEVICE"]) if problem]
    return errors
