"""The tutorial's tooling: running the notebooks and teaching from them.

Owns the ``koopman-tut`` command (``cli``, with the parameter checks of ``nb_params``);
papermill runs that never wait forever (``runner``, ``watchdog``, ``kernel_client``); and the
course kit: what an exercise or a solution cell is (``cells``), student and instructor copies
(``course``) and the offline HTML site (``site``).

May import: every other stage, papermill, nbformat, nbconvert. Nothing imports it but the
package's entry points.
"""
from .. import submodules_on_first_use

__getattr__ = submodules_on_first_use(__name__)
