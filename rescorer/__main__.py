"""``python -m rescorer``: the ``rescorer`` program (how torchrun starts the ranks of a job)."""
import logging
import os
import sys

from .cli import main

code = main()
ranks = sys.modules.get("rescorer.distributed")   # loaded by the commands that can run as a job
if ranks is not None and ranks.launched():
    # A rank of a job leaves without the interpreter's teardown once its work is done and written:
    # torch keeps the gloo group of a DistributedDataParallel model alive after destroy_process_group
    # (its threads run on), and tearing the interpreter down beside those threads now and then aborts
    # the process ("terminate called without an active exception", SIGABRT), which torchrun reports
    # as a failed job and answers by killing the other ranks, perhaps before they have written.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
sys.exit(code)
