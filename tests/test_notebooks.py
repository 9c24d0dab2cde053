"""The tutorial notebooks: structure, parameters, committed outputs, and papermill runs with
non-default parameters through the koopman-tut CLI. (`pytest --nbval-lax notebooks/`
re-executes them at their defaults and compares the cells marked NBVAL_CHECK_OUTPUT.)"""
import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from koopman_tut.tooling import cli

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_quickstart", "01_koopman_and_dmd", "02_koopman_pruning", "03_kmp_equals_magnitude",
            "04_kgp_and_gradient_pruning", "05_early_training", "06_beyond", "07_equivalent_dynamics"]


def test_the_sequence_is_complete():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_structure(path):
    nb = nbformat.read(str(path), as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    tree = ast.parse(params[0].source)
    names = set()
    for node in tree.body:  # literal assignments only, so papermill can infer them
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        ast.literal_eval(node.value)
        names.add(node.targets[0].id)
    assert {"SEED", "DEVICE", "DATASET", "SMOKE"} <= names
    assert "DEVICE = \"auto\"" in params[0].source and "SMOKE = False" in params[0].source
    intro = nb.cells[0].source
    assert intro.startswith("# ") and "Prerequisites" in intro and "Study time" in intro
    assert "Run time:** see the table in the README" in intro  # measured, one place (timings.json)
    assert not re.search(r"\d+ ?s on a", intro), "no hand-typed run time"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "commit the notebook executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "executed top to bottom"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    checked = [c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked and all("assert" in c.source for c in checked), "claims are printed and asserted"
    assert max(len(c.source.splitlines()) for c in code) <= 15, "short cells"
    setup = code[1]
    assert setup.metadata.get("jupyter", {}).get("source_hidden"), "the setup cell is collapsed"
    assert not re.search(r"import koopman_tut\.\w+ as \w\b|from koopman_tut import \w+ as \w\b", setup.source)
    for line in setup.source.splitlines():  # each notebook imports only what it uses
        m = re.match(r"\s*(?:from \S+ )?import (.+)", line)
        if m:
            for name in m.group(1).split(","):
                used = name.split(" as ")[-1].strip()
                rest = "\n".join(c.source for c in code if c is not setup)
                assert re.search(rf"\b{re.escape(used)}\b", rest), f"{used} imported but never used"
    ex_ = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    sol = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert any(c.cell_type == "code" and "..." in c.source for c in ex_), "exercises to fill in"
    assert any(c.cell_type == "code" for c in sol), "runnable solutions"
    assert not any("<details>" in c.source for c in nb.cells), "solutions are tagged cells, not hidden markdown"
    assert "Predict first" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    widget_cells = [i for i, c in enumerate(nb.cells) if "sliders(" in c.source]
    for i in widget_cells:  # a static fallback right above every widget
        above = nb.cells[i - 1]
        assert above.cell_type == "code" and any(o.get("output_type") == "stream" for o in above.outputs)


def test_run_times_are_measured_in_one_place():
    times = json.loads((NB_DIR / "timings.json").read_text())
    assert sorted(times) == EXPECTED
    readme = (NB_DIR.parent / "README.md").read_text()
    for stem, secs in times.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{stem}`"))
        assert row.rstrip(" |").endswith(f"{round(secs)} s"), (stem, row)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_study_time_is_the_same_in_the_readme(path):
    """The study time a notebook states in its first cell is the one the README's table gives."""
    nb = nbformat.read(str(path), as_version=4)
    m = re.search(r"Study time:\*\*\s*about (\d+) min", nb.cells[0].source)
    assert m, "the first cell states 'Study time:** about N min'"
    row = next(line for line in (NB_DIR.parent / "README.md").read_text().splitlines()
                if line.startswith(f"| `{path.stem}`"))
    assert f"| {m.group(1)} min |" in row, (path.stem, row)


def test_solutions_run_and_print(tmp_path):
    """Every solution cell executed in the committed notebooks and printed its answer."""
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        for c in nb.cells:
            if c.cell_type == "code" and "solution" in c.metadata.get("tags", []):
                assert c.execution_count is not None and any(o.get("output_type") in ("stream", "display_data")
                                                             for o in c.outputs), (path.stem, c.source[:60])


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_smoke_run_with_another_seed(path, tmp_path):
    rc = cli.main(["run", "--preset", "smoke", "--only", path.stem, "-p", "SEED", "1",
                   "--output-dir", str(tmp_path)])
    out = tmp_path / path.name
    assert rc == 0 and out.is_file()
    nb = nbformat.read(str(out), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "SEED = 1" in injected[0].source and "SMOKE = True" in injected[0].source


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    for stem in EXPECTED:
        assert stem in text
    assert "SMOKE" in text and "SEED" in text


@pytest.mark.parametrize("command", [["run"], ["list"], ["course", "OUT_NEVER_MADE"]])
def test_cli_rejects_unknown_notebook(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*command, "--only", "99_nothing"]) == 2  # a usage error, like argparse's
    err = capsys.readouterr().err
    assert f"koopman-tut {command[0]}: error: --only 99_nothing: no notebook matches" in err and "Traceback" not in err
    assert not (tmp_path / "OUT_NEVER_MADE").exists()


def test_parse_value():
    assert cli.parse_value("3") == 3 and cli.parse_value("[1, 2]") == [1, 2]
    assert cli.parse_value("True") is True and cli.parse_value("mnist") == "mnist"


@pytest.mark.slow
def test_paper_scale_path_runs_on_tiny_mnist(tmp_path, monkeypatch):
    """03 with DATASET=mnist, MODEL=mnistnet (the paper-preset path) on tiny IDX files."""
    from fakedata import write_mnist

    write_mnist(tmp_path / "data", n_train=256, n_test=64)
    monkeypatch.setenv("KOOPMAN_TUT_DATA", str(tmp_path / "data"))
    rc = cli.main(["run", "--preset", "smoke", "--only", "03", "05", "-p", "DATASET", "mnist", "-p", "MODEL",
                   "mnistnet", "--output-dir", str(tmp_path / "out")])
    assert rc == 0
    nb = nbformat.read(str(tmp_path / "out" / "03_kmp_equals_magnitude.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "MnistNet, 431,080 parameters on mnist" in text
    assert (tmp_path / "out" / "05_early_training.ipynb").exists()  # its explorer loaded MnistNet weights into an MLP


def test_the_paper_preset_gives_05_windows_that_fit():
    """05 records its windows on one training path: the paper preset's WINDOW (200) with 05's own
    STARTS overlapped them (the study refused; the spectra cell recorded them under wrong labels)."""
    from koopman_tut import experiments as ex
    from koopman_tut.tooling.nb_params import plan, read_parameters

    path = Path(cli.notebook_dir()) / "05_early_training.ipynb"
    spec = read_parameters(path)
    plans, errors = plan({path: spec}, cli.PRESETS["paper"], {}, "paper")
    assert not errors
    p = {**spec.defaults, **plans[path]}
    assert p["WINDOW"] == cli.PRESETS["paper"]["WINDOW"] and p["MODEL"] == "mnistnet" and p["DOWNLOAD"] is True
    ex.check_starts(p["STARTS"], p["WINDOW"], p["FINAL_STEPS"])


@pytest.mark.slow
def test_resume_skips_finished_runs_and_reruns_changed_parameters(tmp_path, capsys):
    args = ["run", "--preset", "smoke", "--only", "01", "--output-dir", str(tmp_path)]
    assert cli.main(args) == 0
    first = (tmp_path / "01_koopman_and_dmd.ipynb").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(args + ["--resume"]) == 0
    assert "done" in capsys.readouterr().out
    assert (tmp_path / "01_koopman_and_dmd.ipynb").stat().st_mtime_ns == first
    assert cli.main(args + ["--resume", "-p", "SEED", "2"]) == 0  # other parameters: runs again
    assert (tmp_path / "01_koopman_and_dmd.ipynb").stat().st_mtime_ns != first


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["00_quickstart", "02_koopman_pruning", "03_kmp_equals_magnitude",
                                  "04_kgp_and_gradient_pruning", "05_early_training", "06_beyond",
                                  "07_equivalent_dynamics"])
@pytest.mark.parametrize("seed", [11, 2027])
def test_claims_hold_at_seeds_nobody_chose(stem, seed, tmp_path):
    """Full size, checks on (not SMOKE): every asserted claim must survive another seed."""
    rc = cli.main(["run", "--only", stem, "-p", "SEED", str(seed), "--output-dir", str(tmp_path)])
    assert rc == 0, (tmp_path / "failed" / f"{stem}.ipynb")


@pytest.mark.parametrize("args, words", [
    (["--only", "07", "-p", "WIDTHS", "[5]"], "WIDTHS [5] needs at least 2 different widths"),
    (["--only", "07", "-p", "WIDTHS", "[5, 5]"], "a list of ints >= 1, in increasing order"),
    (["--only", "03", "-p", "COMPRESSIONS", "[1]"], "COMPRESSIONS [1] needs a compression above 1"),
    (["--only", "03", "-p", "COMPRESSIONS", "[32, 2, 8]"], "a list of numbers >= 1, in increasing order"),
    (["--only", "03", "-p", "COMPRESSIONS", "[2, 8, 8, 32]"], "a list of numbers >= 1, in increasing order"),
    (["--only", "00", "-p", "COMPRESSION", "1"], "COMPRESSION 1 prunes nothing"),
    (["--only", "01", "-p", "N_STEPS", "8"], "-p N_STEPS 8 is not an int >= 9"),
    (["--only", "01", "-p", "DIM", "8"], "-p DIM 8 is not an int >= 9"),
    (["--only", "06", "-p", "LR_RATIO", "1"], "-p LR_RATIO 1 is not an int >= 2"),
    (["--only", "07", "-p", "FT_STEPS", "1"], "-p FT_STEPS 1 is not an int >= 2"),
    (["--only", "07", "-p", "DELAYS", "99"], "DELAYS 99 leaves no pairs"),
    (["--only", "07", "-p", "SEEDS", "1"], "SEEDS=1 gives one seed"),
    (["--only", "04", "-p", "SEEDS", "[7]"], "SEEDS=[7] gives one seed"),
    (["--only", "03", "-p", "SEEDS", "1"], "SEEDS=1 gives one seed"),
    (["--only", "02", "-p", "EVERY", "1000"], "WINDOW=40, EVERY=1000 records 1 snapshot(s)"),
    (["--only", "02", "-p", "WINDOW", "3", "-p", "EVERY", "2"], "WINDOW=3, EVERY=2 records 2 snapshot(s)"),
    (["--only", "05", "-p", "STARTS", "[20, 80, 3000]"], "FINAL_STEPS=2000: final_steps=2000 must be at least the last start"),
    (["--only", "05", "-p", "STARTS", "[20, 40]"], "STARTS=[20, 40], WINDOW=30, FINAL_STEPS=2000: starts must be steps >= 0 at least window=30 apart"),
])
def test_parameters_the_study_cannot_use_together_are_refused_before_a_kernel(args, words, tmp_path, monkeypatch,
                                                                              capsys):
    """Values valid one by one that the study cannot run with (an AssertionError without a message, or
    min() of an empty sequence, from inside the kernel): a usage error naming them, before any kernel."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    assert cli.main(["run", *args, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize("preset", sorted(cli.PRESETS))
def test_every_preset_passes_the_study_checks(preset):
    from koopman_tut.tooling.nb_params import read_parameters

    specs = {p: read_parameters(p) for p in cli.notebooks()}
    plans, errors = cli.check_parameters(specs, cli.PRESETS[preset], {}, preset)
    assert not errors, errors
