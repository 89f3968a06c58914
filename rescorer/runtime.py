"""Device choice, seeding and logging: the few things every command sets up the same way."""
from __future__ import annotations

import logging
import os
import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the decoder's commands log through this module
    import torch

log = logging.getLogger("rescorer")

# the number formats a network can score in: fp32 exact; bf16 and int8 approximate (rescorer.scorer)
PRECISIONS = ("fp32", "bf16", "int8")
# the number formats a network can train in, and the ways of making its minibatches (rescorer.trainer)
TRAIN_PRECISIONS = ("fp32", "bf16")
BATCHINGS = ("uniform", "by-source")


def default_device() -> "torch.device":
    """A CUDA GPU when one is present, else the CPU (override with ``--device``)."""
    import torch  # here, not above: the decoder's commands log through this module without torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def add_device_option(p, what: str = "") -> None:
    """``--device`` of a command (read by ``resolve_device``); ``what``: whose device it is."""
    p.add_argument("--device", default="auto",
                   help=f"{what + ' ' if what else ''}device: auto (CUDA when present, default), cpu, cuda, cuda:1 ...")


def resolve_device(name: str | None) -> "torch.device":
    import torch
    if name in (None, "", "auto"):
        return default_device()
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here")
    return dev


def seed_everything(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


LOGGERS = ("rescorer", "moses_integration")  # the two packages' loggers (MERT's iterations, the pipeline)


def setup_logging(log_file: str | os.PathLike | None = None, verbose: bool = False,
                  extra: tuple[str, ...] = ()) -> None:
    """Log both packages' messages (and those of the ``extra`` loggers) to stderr and ``log_file``;
    records still propagate to the root."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    for h in handlers:
        h._rescorer = True  # type: ignore[attr-defined]
        h.setFormatter(fmt)
    for name in LOGGERS + tuple(extra):
        pkg = logging.getLogger(name)
        for h in list(pkg.handlers):
            if getattr(h, "_rescorer", False):
                pkg.removeHandler(h)
                h.close()
        for h in handlers:
            pkg.addHandler(h)
        pkg.setLevel(logging.DEBUG if verbose else logging.INFO)
