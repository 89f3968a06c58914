"""Dynamic int8 quantisation of the network's large matrices, for faster CPU scoring.

``int8_copy(model)`` returns a copy of a trained RNN Encoder-Decoder (gated unit) whose matrix
products run in int8: every weight matrix is quantised once, per output row (symmetric, scale
max|row| / 127), and each product quantises its input rows on the fly (PyTorch's dynamic
quantisation, fbgemm/oneDNN kernels; the results are float32).  Embeddings, biases, the
nonlinearities, the maxout and the softmax stay float32.

It is an approximation: with a trained network the scores move by about a tenth of a nat per
pair on average, and some pairs by more (``experiments/bench_score.py --precision int8 --model
run/best.pt --real`` measures it on a real table slice).  It pays most on CPUs with integer
dot-product instructions (VNNI, AMX); on an AVX2-only CPU the gain is smaller.

PyTorch marks the eager quantisation API (``torch.ao``) as deprecated in favour of the separate
torchao package; the kernels used here are PyTorch's own and need nothing else.
"""
from __future__ import annotations

import copy
import itertools
import warnings
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .model import GatedUnit, RNNEncoderDecoder


@contextmanager
def _eager_api():
    """The eager API's deprecation warnings say nothing the user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        yield


def int8_linear(weight: Tensor, bias: Tensor | None = None) -> nn.Module:
    """``x -> x W^T (+ b)`` with W quantised to int8 per output row, x quantised per call."""
    out_features, in_features = weight.shape
    w = weight.detach().float().cpu()
    scales = (w.abs().amax(1) / 127.0).clamp(min=1e-12).double()
    with _eager_api():
        q = torch.quantize_per_channel(w, scales, torch.zeros(out_features, dtype=torch.long), 0, torch.qint8)
        m = torch.ao.nn.quantized.dynamic.Linear(in_features, out_features, bias_=bias is not None,
                                                 dtype=torch.qint8)
        m.set_weight_bias(q, None if bias is None else bias.detach().float().cpu())
    return m


class Int8GatedUnit(GatedUnit):
    """``model.GatedUnit``, its equations unchanged, with the products W e and U h in int8."""

    def __init__(self, cell: GatedUnit):
        nn.Module.__init__(self)  # not GatedUnit's: its weights come from ``cell``, not from a fresh init
        self.hidden, self.state_size, self.reset_before = cell.hidden, cell.state_size, cell.reset_before
        self.W_in = int8_linear(cell.W_in.weight, cell.W_in.bias)
        ends = list(itertools.accumulate(cell.row_blocks(), initial=0))
        rows = list(zip(ends[:-1], ends[1:]))  # the blocks of U that step multiplies by
        self.U_rows = nn.ModuleDict({f"{a}:{b}": int8_linear(cell.U[a:b]) for a, b in rows})

    def recurrent(self, h: Tensor, first: int, last: int, add: Tensor | None = None) -> Tensor:
        uh = self.U_rows[f"{first}:{last}"](h)
        return uh if add is None else add + uh


def int8_copy(model: RNNEncoderDecoder) -> RNNEncoderDecoder:
    """A CPU copy of ``model`` for scoring, its matrices in int8 (the original is untouched)."""
    if model.cfg.cell != "gru":
        raise ValueError(f"int8 scoring is built for the gated unit (gru), not the {model.cfg.cell} cell")
    q = copy.deepcopy(model).cpu().eval()
    q.encoder.cell = Int8GatedUnit(q.encoder.cell)
    q.decoder.cell = Int8GatedUnit(q.decoder.cell)
    for owner, name in ((q.encoder, "V"), (q.decoder, "V"), (q.decoder, "C"), (q.decoder, "O_h"),
                        (q.decoder, "O_y"), (q.decoder, "O_c"), (q.decoder, "G_r"), (q.decoder, "G_l")):
        lin = getattr(owner, name)
        setattr(owner, name, int8_linear(lin.weight, lin.bias))
    return q
