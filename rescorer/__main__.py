"""``python -m rescorer``: the ``rescorer`` program (how torchrun starts the ranks of a job)."""
import sys

from .cli import main

sys.exit(main())
