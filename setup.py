"""Builds the compiled parts, written in Cython's pure-Python mode: the built-in decoder's search
core (moses_integration/search.py) and MERT's envelope sweep (moses_integration/envelope.py);
everything else is in setup.cfg."""
from Cython.Build import cythonize
from setuptools import setup

setup(ext_modules=cythonize(["moses_integration/search.py", "moses_integration/envelope.py"], language_level=3,
                                 quiet=True))
