"""The experiments of phrase-rescorer: each a script (``python experiments/NAME.py``) and a module
of this package, so that they share pieces (``experiments.common``) and the tests import them."""
