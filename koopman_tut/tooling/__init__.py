"""The tutorial's tooling: running the notebooks and teaching from them.

Owns the ``koopman-tut`` command (``cli``, with the parameter checks of ``nb_params`` and, against
the package itself, ``run_checks``);
papermill runs that never wait forever (``runner``, ``watchdog``, ``kernel_client``); and the
course kit: what an exercise, solution, check or prediction cell is (``cells``), the checkers
that answer a student's exercise (``checks``), the student, instructor and nbgrader copies of a
notebook (``copies``), the students' README and wheel (``handout``), the course folder
(``course``), the two offline websites built by Sphinx with MyST-NB (``site``, its pages
prepared by ``site_pages``), reveal.js slides (``slides``) and atomic file writes (``files``).

May import: every other stage, papermill, nbformat, nbconvert, Sphinx (in a subprocess).
Nothing imports it but the package's entry points.
"""
from .. import submodules_on_first_use

__getattr__ = submodules_on_first_use(__name__)
