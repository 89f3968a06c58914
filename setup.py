"""Builds the compiled parts: the built-in decoder's search core (moses_integration/search.py)
and MERT's envelope sweep (moses_integration/envelope.py), written in Cython's pure-Python mode,
the decoder's phrase-table reader (moses_integration/table_scan.pyx) and its language model over
KenLM's C++ API (moses_integration/kenlm_core.pyx).
Everything else is in setup.cfg.

kenlm_core needs KenLM's headers and libkenlm.so: KENLM_INCLUDE (the headers of the kenlm source
package, which moses_integration/install_kenlm.sh installs into VENV/include/kenlm) and
KENLM_LIB (the directory of the kenlm package's libkenlm.so).  Without them (the first
`pip install -e`, before install_kenlm.sh has run) it is left out with a message, and the
decoder queries the kenlm module instead; `make setup` builds it afterwards and fails if it
cannot."""
import glob
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def kenlm_extension():
    """The Extension of kenlm_core, or None (and why on stderr) when KenLM's files are missing;
    with KENLM_INCLUDE or KENLM_LIB given, a missing file is an error."""
    venv = os.path.join(HERE, ".venv")
    include = os.environ.get("KENLM_INCLUDE") or os.path.join(venv, "include", "kenlm")
    lib = os.environ.get("KENLM_LIB") or next(
        iter(sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages")))), "")
    asked = "KENLM_INCLUDE" in os.environ or "KENLM_LIB" in os.environ
    missing = [p for p in (os.path.join(include, "lm", "model.hh"), os.path.join(lib, "libkenlm.so"))
               if not os.path.exists(p)]
    if missing:
        msg = f"moses_integration.kenlm_core: {', '.join(missing)} not found"
        if asked:
            sys.exit(msg)
        print(f"{msg}: not built (make setup builds it)", file=sys.stderr)
        return None
    lib = os.path.abspath(lib)
    return Extension("moses_integration.kenlm_core", ["moses_integration/kenlm_core.pyx"], language="c++",
                     include_dirs=[include], library_dirs=[lib], runtime_library_dirs=[lib], libraries=["kenlm"],
                     define_macros=[("KENLM_MAX_ORDER", "6")], extra_compile_args=["-O2", "-std=c++11"])


extensions = ["moses_integration/search.py", "moses_integration/envelope.py", "moses_integration/table_scan.pyx"]
ext = kenlm_extension()
setup(ext_modules=cythonize(extensions + ([ext] if ext is not None else []), language_level=3, quiet=True))
