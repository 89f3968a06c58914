"""A job for tests/test_distributed.py: rank 0 writes the output, rank 1 is then killed by SIGTERM,
as a rank left over after a finished job would be."""
import os
import signal
import sys
import time

out = sys.argv[1]
if os.environ["RANK"] == "0":
    with open(out, "w") as f:
        f.write("done\n")
else:
    while not os.path.exists(out):
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
