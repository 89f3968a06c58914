"""``python -m rescorer``: this package's commands (how torchrun starts the ranks of a job)."""
import sys

from .cli import main

sys.exit(main())
