"""The koopman-tut CLI on tiny notebooks (a few seconds each with the python3 kernel): which files
count as tutorial notebooks, where failed copies go, file modes, the summary, parameter checks,
stale temporaries and kernel noise."""
import os
import stat
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from koopman_tut import cli


def write_notebook(path: Path, parameters: str, body: str) -> Path:
    nb = new_notebook(cells=[new_markdown_cell(f"# {path.stem}"),
                             new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                             new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def nbs(tmp_path, monkeypatch) -> Path:
    """A notebooks folder with 00_ok (SEED, DATASET, MODEL) and 01_fail (SEED, FAIL: raises if FAIL)."""
    d = tmp_path / "notebooks"
    d.mkdir()
    write_notebook(d / "00_ok.ipynb", 'SEED = 0\nDATASET = "digits"\nMODEL = "auto"', "print(SEED, DATASET, MODEL)")
    write_notebook(d / "01_fail.ipynb", "SEED = 0\nFAIL = True",
                   'if FAIL:\n    raise ValueError("boom " + "x" * 80)\nprint("fine")')
    monkeypatch.setenv("KOOPMAN_TUT_NOTEBOOKS", str(d))
    monkeypatch.chdir(tmp_path)
    return d


def injected(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "".join(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


# 1. the notebook list is exactly the tutorial's; failed copies go outside notebooks/

def test_only_tutorial_notebooks_are_listed(nbs, capsys):
    for name in ["00_ok.failed.ipynb", ".00_ok.kt-tmp-abc.ipynb", "00_ok-checkpoint.ipynb", "02_Bad Name.ipynb"]:
        (nbs / name).write_bytes((nbs / "00_ok.ipynb").read_bytes())
    (nbs / ".ipynb_checkpoints").mkdir()
    (nbs / ".ipynb_checkpoints" / "00_ok-checkpoint.ipynb").write_bytes((nbs / "00_ok.ipynb").read_bytes())
    assert [p.name for p in cli.notebooks()] == ["00_ok.ipynb", "01_fail.ipynb"]
    assert [p.name for p in cli.notebooks(["00"])] == ["00_ok.ipynb"]
    assert cli.main(["list"]) == 0
    assert "failed" not in capsys.readouterr().out.replace("01_fail", "")


def test_failed_in_place_run_leaves_notebooks_folder_alone(nbs, tmp_path):
    before = sorted(p.name for p in nbs.iterdir())
    original = (nbs / "01_fail.ipynb").read_bytes()
    assert cli.main(["run", "--in-place", "--only", "01"]) == 1
    assert sorted(p.name for p in nbs.iterdir()) == before
    assert (nbs / "01_fail.ipynb").read_bytes() == original
    failed = tmp_path / "outputs" / "failed" / "01_fail.ipynb"
    assert "boom" in failed.read_text()
    assert [p.name for p in cli.notebooks(["01"])] == ["01_fail.ipynb"]


# 2. file modes follow the umask; --in-place keeps the notebook's mode

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_respect_the_umask(nbs, tmp_path, umask):
    umask(0o022)
    assert cli.main(["run", "--only", "00", "--output-dir", "a"]) == 0
    assert mode(tmp_path / "a" / "00_ok.ipynb") == 0o644
    umask(0o077)
    assert cli.main(["run", "--only", "00", "01", "--output-dir", "b"]) == 1
    assert mode(tmp_path / "b" / "00_ok.ipynb") == 0o600
    assert mode(tmp_path / "b" / "failed" / "01_fail.ipynb") == 0o600


def test_in_place_keeps_the_notebook_mode(nbs, umask):
    umask(0o077)
    os.chmod(nbs / "00_ok.ipynb", 0o664)
    assert cli.main(["run", "--in-place", "--only", "00", "-p", "SEED", "5"]) == 0
    assert mode(nbs / "00_ok.ipynb") == 0o664 and "SEED = 5" in injected(nbs / "00_ok.ipynb")


# 3. the summary names the error and the failed copy, untruncated

def test_summary_names_exception_and_failed_copy(nbs, tmp_path, capsys):
    out = tmp_path / ("a_rather_long_output_folder_name_" * 3)
    assert cli.main(["run", "--only", "01", "--output-dir", str(out)]) == 1
    text = capsys.readouterr().out
    failed = out / "failed" / "01_fail.ipynb"
    assert failed.is_file() and str(failed) in text
    assert "01_fail" in text and "ValueError: boom " + "x" * 80 in text
    assert "FAILED: )" not in text and ".failed.ipynb" not in text


def test_summary_without_a_failed_copy(nbs, tmp_path, capsys, monkeypatch):
    import papermill

    def broken(*args, **kwargs):
        raise RuntimeError("kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", broken)
    assert cli.main(["run", "--only", "00", "--output-dir", "out"]) == 1
    text = capsys.readouterr().out
    assert "RuntimeError: kernel died" in text
    assert not list((tmp_path / "out").rglob("*.ipynb")) and "failed" not in text.split("RuntimeError")[1]


# 4. unknown parameters are an error unless --allow-unknown

def test_unknown_parameter_is_an_error(nbs, tmp_path, capsys):
    assert cli.main(["run", "-p", "UNKNOWN", "3", "--output-dir", "out"]) == 2
    err = capsys.readouterr().err
    assert "UNKNOWN" in err and "SEED" in err and "FAIL" in err
    assert not (tmp_path / "out").exists()


def test_allow_unknown_and_partly_declared_parameters(nbs, tmp_path):
    rc = cli.main(["run", "-p", "UNKNOWN", "3", "-p", "FAIL", "False", "--allow-unknown", "--output-dir", "out"])
    assert rc == 0
    assert "FAIL = False" in injected(tmp_path / "out" / "01_fail.ipynb")
    assert "FAIL" not in injected(tmp_path / "out" / "00_ok.ipynb")


# 5. DATASET and MODEL are checked before anything runs

@pytest.mark.parametrize("name, value, valid", [("DATASET", "foo", ["digits", "mnist", "cifar10"]),
                                                ("MODEL", "foo", ["auto", "mlp", "mnistnet", "resnet20"])])
def test_bad_dataset_or_model_is_rejected(nbs, tmp_path, capsys, name, value, valid):
    assert cli.main(["run", "-p", name, value, "--output-dir", "out"]) == 2
    err = capsys.readouterr().err
    assert name in err and value in err and all(v in err for v in valid)
    assert not (tmp_path / "out").exists()


# 6. stale temporaries of a killed run are removed

def test_stale_temporaries_are_removed(nbs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".00_ok.kt-tmp-k1ll3d.ipynb"
    stale.write_text('{"partial": ')
    other = out / ".notes.ipynb"  # not the CLI's own: kept
    other.write_text("{}")
    assert cli.main(["run", "--only", "00", "--output-dir", str(out)]) == 0
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in out.iterdir()) == [".notes.ipynb", "00_ok.ipynb"]


# 7. no "Kernel is running over TCP without encryption" per notebook

def test_no_tcp_encryption_warning(nbs, capfd):
    assert cli.main(["run", "--only", "00", "--output-dir", "out"]) == 0
    assert "without encryption" not in capfd.readouterr().err
