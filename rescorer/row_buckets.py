"""Training's bfloat16 matrix products with their row counts rounded up to a few sizes.

On the CPU, torch runs a bfloat16 product through oneDNN, which makes (compiles) a kernel for
every new shape and keeps the last ones made in a cache. The row count of training's products
is the number of live rows of a recurrent step, of a prefix-tree level or of a minibatch's
nodes, and it changes from product to product, so nearly every product made a new kernel, which
costs far more than the product itself (on AMX most of all). Padded with zero rows to a size of
the ladder 16, 24, 32, 48, 64, 96, ... (at most half again as many rows), the products come in a
few dozen shapes whose kernels are made once. A zero row changes no other row of a product, and
its output is cut off again, so its gradient is zero and adds nothing to the weights' gradients.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


def bucket(rows: int) -> int:
    """The smallest size of the ladder 16, 24, 32, 48, 64, 96, ... that holds ``rows``."""
    if rows <= 16:
        return 16
    p = 1 << ((rows - 1).bit_length() - 1)     # the largest power of two below rows
    return p + p // 2 if rows <= p + p // 2 else 2 * p


def bucketed(x: Tensor) -> bool:
    """Whether products of ``x`` go through oneDNN's per-shape bfloat16 kernels, whose rows are
    bucketed: bfloat16 on the CPU."""
    return x.dtype == torch.bfloat16 and x.device.type == "cpu"


def padded(x: Tensor, rows: int) -> Tensor:
    """``x`` (m, n) with zero rows after its own up to ``rows``."""
    return x if rows == x.shape[0] else F.pad(x, (0, 0, 0, rows - x.shape[0]))


class BucketedRows(TorchFunctionMode):
    """Inside it, ``F.linear``, ``addmm``, ``mm`` and ``@`` of 2-D operands compute on the left one's
    rows padded to ``bucket(rows)`` and return the original rows."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # the row operand's position: F.linear(x, W, b), mm(x, W), x @ W, addmm(add, x, W)
        at = 1 if func in (torch.addmm, Tensor.addmm) else 0
        if (func not in _PRODUCTS or len(args) <= at + 1
                or not all(isinstance(a, Tensor) and a.dim() == 2 for a in args[at:at + 2])):
            return func(*args, **kwargs)
        x = args[at]
        m = x.shape[0]
        rows = bucket(m)
        if rows == m:
            return func(*args, **kwargs)
        args = list(args)
        args[at] = padded(x, rows)
        if at == 1 and isinstance(args[0], Tensor) and args[0].dim() == 2 and args[0].shape[0] == m:
            args[0] = padded(args[0], rows)    # the added term, row for row
        return func(*args, **kwargs)[:m]


_PRODUCTS = {F.linear, torch.mm, Tensor.mm, torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.addmm,
             Tensor.addmm}


@contextlib.contextmanager
def autocast(device: torch.device, bf16: bool) -> Iterator[None]:
    """Training's products in bfloat16 (``torch.autocast``, fp32 master weights) when ``bf16``,
    on the CPU with their rows bucketed; a no-op otherwise."""
    if not bf16:
        yield
        return
    with torch.autocast(device.type, torch.bfloat16):
        if device.type != "cpu":
            yield
            return
        with BucketedRows():
            yield
