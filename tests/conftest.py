import shutil

import pytest
import torch

from koopman_tut.numerics import native


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is present (skipped, never faked, elsewhere)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def require_native():
    """``need(found, without)``: ``found``, a part of the C kernels (koopman_tut/numerics/_fused.c), or a failure
    where it is None although a C compiler is here and the kernels are switched on (they were not built or not
    loaded), or a skip saying ``without`` (what runs instead) where there was no compiler."""
    def need(found, without: str):
        if found is None:
            compiler = shutil.which("cc") or shutil.which("gcc")
            if compiler and native.switched_on():
                pytest.fail(f"a C compiler ({compiler}) is here but koopman_tut/numerics/_fused.c was not built "
                            "or not loaded: pip install -e . and read its output")
            pytest.skip(f"no C compiler when the package was installed: {without}")
        return found
    return need
