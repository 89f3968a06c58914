"""The compiled parts (``search.py``, ``envelope.py``: Cython's pure-Python mode; ``kenlm_core.pyx``:
Cython over KenLM's C++ API; built in place by ``make setup``): an extension module older than
its source would silently run old code."""
from __future__ import annotations

import os
from types import ModuleType


def check_fresh(module: ModuleType) -> None:
    """Raise ImportError when ``module`` is a compiled extension built in place (its .c or .cpp file
    lies beside it, as ``make setup`` and ``pip install -e`` leave it) and its .py or .pyx source
    is newer.
    An installed wheel has no .c file, and its files get the times of installation."""
    path = module.__file__ or ""
    if not getattr(module, "COMPILED", False) or path.endswith(".py"):
        return
    here, name = os.path.dirname(path), module.__name__.rsplit(".", 1)[-1]
    src = next((p for p in (os.path.join(here, f"{name}.{ext}") for ext in ("py", "pyx")) if os.path.exists(p)), "")
    made_here = any(os.path.exists(os.path.join(here, f"{name}.{ext}")) for ext in ("c", "cpp"))
    if made_here and src and os.path.getmtime(src) > os.path.getmtime(path):
        raise ImportError(f"{path} is older than {src}: rebuild it with `make setup` "
                          "(or `python setup.py build_ext --inplace`)")
