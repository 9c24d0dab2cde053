"""The one compiled part: koopman_tut/numerics/_fused.c (optional; see koopman_tut/numerics/native.py).

Everything else is declared in pyproject.toml. Where no C compiler is found the build goes
on without it and the package runs the same passes in torch (slower, the same numbers up
to the order of a sum).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "koopman_tut.numerics._fused", ["koopman_tut/numerics/_fused.c"],
    extra_compile_args=["-O3", "-ffp-contract=off"],  # no fused multiply-add: the same sums on every CPU
    optional=True,
)])
