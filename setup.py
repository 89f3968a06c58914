"""Builds the compiled search core of the built-in decoder (moses_integration/search.py, written
in Cython's pure-Python mode); everything else is in setup.cfg."""
from Cython.Build import cythonize
from setuptools import setup

setup(ext_modules=cythonize(["moses_integration/search.py"], language_level=3, quiet=True))
