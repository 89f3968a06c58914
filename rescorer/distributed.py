"""Several processes, on one machine or many, with ``torch.distributed``.

A command runs as one rank of a job when it is started by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address), or by the ``--workers P`` option,
which starts ``torchrun --standalone --nproc-per-node P`` on this machine with the same
command line.  The process group is gloo on the CPU and NCCL on CUDA; nothing else carries
data between ranks.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

log = logging.getLogger("rescorer")


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Started by torchrun (or ``--workers``): the environment names this process's rank."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def this_rank() -> Rank:
    if not launched():
        return Rank()
    return Rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """Each rank of a CUDA job on its own GPU (``cuda:LOCAL_RANK``); the CPU is shared."""
    if device.type == "cuda" and rank.world > 1 and device.index is None:
        return torch.device("cuda", rank.local_rank % torch.cuda.device_count())
    return device


# a rank may wait long for the others (parts of unequal cost, a slow validation), so the
# collective calls get days, not the default 30 minutes, before they give up
TIMEOUT = datetime.timedelta(days=7)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Rank]:
    """The job's process group for the ``with`` block (none when not launched as a job)."""
    rank = this_rank()
    if not launched() or dist.is_initialized():
        yield rank
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device, rank))
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield rank
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


class WorkerError(RuntimeError):
    """A rank of a ``--workers`` job failed; the message names it."""


def run_workers(n: int, module: str, argv: list[str], what=lambda rank: "", output: str | None = None) -> int:
    """Run ``python -m MODULE ARGV`` as ``n`` ranks on this machine under torchrun (standalone
    rendezvous); 0 when every rank succeeded, else ``WorkerError`` naming the ranks that failed
    (``what(rank)`` adds what that rank was doing).  Without ``OMP_NUM_THREADS`` set, the
    cores are shared out between the ranks.  ``output``: the file the job writes last; when it
    was written by this job, a rank that fails afterwards (killed while exiting) leaves the job
    successful, with a warning."""
    started = time.time()
    # torchrun's own modules (elastic agent and all): only a --workers job loads them
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    args = parse_args(["--standalone", "--nproc-per-node", str(n), "--module", module, *argv])
    log.info("starting %d worker processes (torchrun --standalone --nproc-per-node %d -m %s %s)", n, n, module,
             " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        run(args)
    except ChildFailedError as e:
        hows = {rank: (f"was killed by {signal.Signals(-f.exitcode).name}" if f.exitcode < 0
                       else f"exited with status {f.exitcode}") for rank, f in sorted(e.failures.items())}
        if output is not None and os.path.exists(output) and os.path.getmtime(output) >= started:
            log.warning("%s after the job had written %s, which is complete",
                        "; ".join(f"rank {r} {h}" for r, h in hows.items()), output)
            return 0
        lines = [f"rank {rank} {how}{what(rank)}" for rank, how in hows.items()]
        raise WorkerError("; ".join(lines) + " (rerun with --resume: finished work is kept)") from None
    return 0
