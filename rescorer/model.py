"""The RNN Encoder-Decoder of Cho et al. (2014), section 2 and appendix A.

Symbols follow the paper (see ``shared/docs/paper-facts.md``):

    encoder   r = σ(W_r e(x_t) + U_r h_{t-1})            z = σ(W_z e(x_t) + U_z h_{t-1})
              h~ = tanh(W e(x_t) + U (r ⊙ h_{t-1}))       h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h~
              c = tanh(V h_N)
    decoder   h'_0 = tanh(V' c)
              r' = σ(W'_r e(y_{t-1}) + U'_r h'_{t-1} + C_r c)   (z' likewise)
              h~' = tanh(W' e(y_{t-1}) + C c + U' (r' ⊙ h'_{t-1}))
              h'_t = z' ⊙ h'_{t-1} + (1 - z') ⊙ h~'
    output    s' = O_h h'_t + O_y e(y_{t-1}) + O_c c;  s_i = max(s'_{2i-1}, s'_{2i})
              p(y_t | y_<t, x) = softmax(G_l G_r s)

``z`` weights the *previous* state, as in the paper.  ``gate="reset-before"`` (the
default, as GroundHog's ``RecurrentLayer``) applies the reset before the recurrent
matrix; ``gate="reset-after"`` is the appendix's printed form,
``h~' = tanh(W' e + r' ⊙ (U' h' + C c))`` (and ``tanh(W e + r ⊙ U h)`` in the encoder).
Biases, omitted in the paper, are kept on every input projection and on the output.

Every phrase, source and target, ends with the end-of-sequence symbol (id 0); the
score of a pair is the sum of the log-probabilities of all target symbols, end
included.  ``e(y_0)`` is the zero vector.

For the ablation of the gated unit, ``cell`` swaps the recurrent unit of both encoder and
decoder, everything else unchanged (``c`` enters the decoder's input terms as above):

    tanh      h_t = tanh(W e(x_t) + U h_{t-1})                       (a plain RNN)
    lstm      i, f, o = σ(W_{i,f,o} e(x_t) + U_{i,f,o} h_{t-1}),  g = tanh(W_g e(x_t) + U_g h_{t-1})
              m_t = f ⊙ m_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(m_t)          (state [h_t; m_t], m_0 = 0)
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import row_buckets
from .config import BLOCKS, ModelConfig, flops_per_token  # noqa: F401  (also rescorer.model's)

def _normal_(w: Tensor) -> None:
    nn.init.normal_(w, 0.0, 0.01)  # N(0, 0.01^2), as the paper initialises every non-recurrent weight


def _orthogonal_blocks_(u: Tensor, hidden: int) -> None:
    """Each H x H block: the left singular vectors of a Gaussian matrix (the paper's init)."""
    with torch.no_grad():
        for k in range(u.shape[0] // hidden):
            g = torch.randn(hidden, hidden, dtype=torch.float64)
            left, _, _ = torch.linalg.svd(g)
            u[k * hidden:(k + 1) * hidden].copy_(left.to(u.dtype))


class Recurrent(nn.Module):
    """What every recurrent unit here has: ``W_in`` stacks the input matrices of its ``blocks``
    (blocks x H rows) with their biases, ``U`` the recurrent ones; ``step(x, state)`` takes the
    input terms ``x`` (B, blocks x H) and a state (B, ``state_size``); ``output(state)`` is the
    h_t that the rest of the network reads."""
    blocks = 1

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.state_size = hidden
        self.W_in = nn.Linear(input_size, self.blocks * hidden)
        self.U = nn.Parameter(torch.empty(self.blocks * hidden, hidden))
        _normal_(self.W_in.weight)
        nn.init.zeros_(self.W_in.bias)
        _orthogonal_blocks_(self.U, hidden)

    def initial(self, h0: Tensor) -> Tensor:
        """The state whose output is ``h0``."""
        return h0

    _views: dict | None = None

    def row_blocks(self) -> list[int]:
        """The row counts of the blocks of ``U`` that ``step`` multiplies by, each in one product,
        in order (they add up to U's rows)."""
        return [self.blocks * self.hidden]

    def u_rows(self, first: int, last: int) -> Tensor:
        """``U[first:last]^T``.  Inside ``unrolled()`` each slice is taken once and reused by every
        step (cast once under autocast)."""
        if self._views is None:
            return self.U[first:last].t()
        key = (first, last)
        if key not in self._views:
            u = self.U[first:last].t()
            kind = u.device.type
            if torch.is_autocast_enabled(kind):  # cast once per unroll, not at every step's product
                u = u.to(torch.get_autocast_dtype(kind))
            self._views[key] = u
        return self._views[key]

    def product(self, h: Tensor, first: int, last: int, add: Tensor | None = None) -> Tensor:
        """``h U[first:last]^T (+ add)``, the recurrent products.  Inside ``unrolled()`` while
        training, U's gradient is not summed step by step: each step keeps its ``h`` and the
        gradient of its product, and the unroll's gradient of each block of U is one product
        of all of them, ``Σ_t h_t^T g_t`` (``_RecurrentBlock``)."""
        if self._views is None or not (torch.is_grad_enabled() and self.U.requires_grad):
            u = self.u_rows(first, last)
            return h @ u if add is None else torch.addmm(add, h, u)
        if not self._views.get("blocks"):
            self._views["blocks"] = _recurrent_blocks(self.U, self.row_blocks())
        block, steps = self._views["blocks"][(first, last)]
        out = _RecurrentStep.apply(h, block, steps)
        return out if add is None else out + add

    @contextmanager
    def unrolled(self):
        """The scope of one unroll of the recurrence (see ``u_rows`` and ``product``)."""
        outer = self._views
        self._views = {} if outer is None else outer
        try:
            yield self
        finally:
            self._views = outer

    def output(self, state: Tensor) -> Tensor:
        return state


class GatedUnit(Recurrent):
    """The gated hidden unit: reset gate r, update gate z, candidate h~.

    ``W_in`` stacks [W_r; W_z; W] (3H x E) with their biases; ``U`` stacks [U_r; U_z; U] (3H x H).
    """
    blocks = BLOCKS["gru"]

    def __init__(self, input_size: int, hidden: int, gate: str):
        super().__init__(input_size, hidden)
        self.reset_before = gate == "reset-before"

    def row_blocks(self) -> list[int]:
        H = self.hidden
        return [2 * H, H] if self.reset_before else [3 * H]   # U_r and U_z together, then U; or all three

    def recurrent(self, h: Tensor, first: int, last: int, add: Tensor | None = None) -> Tensor:
        """``h U[first:last]^T (+ add)``: the recurrent products, in one place (``rescorer.int8``
        replaces them)."""
        return self.product(h, first, last, add)

    def step(self, x: Tensor, h: Tensor, inside: Tensor | None = None) -> Tensor:
        """One step.  ``x`` (B, 3H) holds the input terms [W_r e + .., W_z e + .., W e + ..];
        ``inside`` (B, H), reset-after only, is added to ``U h`` before the reset (the decoder's C c)."""
        H = self.hidden
        if self.reset_before:
            rz = torch.sigmoid(self.recurrent(h, 0, 2 * H, x[:, :2 * H]))             # r, z
            r, z = rz[:, :H], rz[:, H:]
            h_tilde = torch.tanh(self.recurrent(r * h, 2 * H, 3 * H, x[:, 2 * H:]))   # tanh(W e + U (r ⊙ h))
        else:
            uh = self.recurrent(h, 0, 3 * H)
            rz = torch.sigmoid(x[:, :2 * H] + uh[:, :2 * H])
            r, z = rz[:, :H], rz[:, H:]
            inner = uh[:, 2 * H:] if inside is None else uh[:, 2 * H:] + inside
            h_tilde = torch.tanh(x[:, 2 * H:] + r * inner)                        # tanh(W e + r ⊙ (U h [+ C c]))
        return z * h + (1.0 - z) * h_tilde                                        # h_t = z h_{t-1} + (1-z) h~


class TanhUnit(Recurrent):
    """A plain recurrent unit, no gates: the vanishing-gradient baseline of the ablation."""
    blocks = BLOCKS["tanh"]

    def step(self, x: Tensor, h: Tensor, inside: Tensor | None = None) -> Tensor:
        return torch.tanh(self.product(h, 0, self.hidden, x))                      # h_t = tanh(W e + U h_{t-1})


class LSTMUnit(Recurrent):
    """Long short-term memory: input, forget and output gates and a memory cell m; the state is
    [h; m] (B, 2H).  ``W_in`` stacks [W_i; W_f; W_o; W_g]; the forget bias starts at 1."""
    blocks = BLOCKS["lstm"]

    def __init__(self, input_size: int, hidden: int):
        super().__init__(input_size, hidden)
        self.state_size = 2 * hidden
        with torch.no_grad():
            self.W_in.bias[hidden:2 * hidden].fill_(1.0)

    def initial(self, h0: Tensor) -> Tensor:
        return torch.cat([h0, torch.zeros_like(h0)], -1)                           # m_0 = 0

    def output(self, state: Tensor) -> Tensor:
        return state[..., :self.hidden]

    def step(self, x: Tensor, state: Tensor, inside: Tensor | None = None) -> Tensor:
        H = self.hidden
        h, m = state[:, :H], state[:, H:]
        a = self.product(h, 0, 4 * H, x)
        i, f, o = torch.sigmoid(a[:, :3 * H]).split(H, 1)
        g = torch.tanh(a[:, 3 * H:])
        m = f * m + i * g                                                          # m_t = f m_{t-1} + i g
        return torch.cat([o * torch.tanh(m), m], 1)                                # h_t = o tanh(m_t)


UNITS = {"gru": GatedUnit, "lstm": LSTMUnit, "tanh": TanhUnit}   # the recurrent unit of each cell


def _recurrent_blocks(U: Tensor, rows: list[int]) -> dict[tuple[int, int], tuple[Tensor, list]]:
    """U split into blocks of ``rows`` rows, each transposed (and cast under autocast) once for
    an unroll: (first, last) -> (the block, the list its steps fill for the backward)."""
    kind = U.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else U.dtype
    out, start = {}, 0
    for part in torch.split(U, rows):   # one backward writing the blocks' gradients side by side
        steps: list = []
        out[(start, start + part.shape[0])] = (_RecurrentBlock.apply(part.t(), dtype, steps), steps)
        start += part.shape[0]
    return out


class _RecurrentStep(torch.autograd.Function):
    """One step's ``h u`` with a block ``u`` of ``_RecurrentBlock``: the backward gives h its
    gradient ``g u^T`` and leaves (h, g) for the block's own backward instead of a gradient of
    u.  In bfloat16 on the CPU the rows are padded to ``row_buckets.bucket`` sizes, in the
    backward as in the forward (oneDNN makes a kernel for every new shape)."""

    @staticmethod
    def forward(ctx, h: Tensor, u: Tensor, steps: list) -> Tensor:
        m = h.shape[0]
        hu = h.to(u.dtype)
        if row_buckets.bucketed(u):
            hu = row_buckets.padded(hu, row_buckets.bucket(m))
        ctx.hu, ctx.steps, ctx.h_dtype = hu, steps, h.dtype
        ctx.save_for_backward(u)
        return (hu @ u)[:m]

    @staticmethod
    def backward(ctx, g: Tensor):
        (u,) = ctx.saved_tensors
        m = g.shape[0]
        gu = row_buckets.padded(g.to(u.dtype), ctx.hu.shape[0])
        ctx.steps.append((ctx.hu, gu))
        return (gu @ u.t())[:m].to(ctx.h_dtype), None, None


class _RecurrentBlock(torch.autograd.Function):
    """A block of U^T entering an unroll (cast to ``dtype``); its gradient is computed once, after
    every step's backward, from what the steps left: Σ_t h_t^T g_t as one product."""

    @staticmethod
    def forward(ctx, u: Tensor, dtype: torch.dtype, steps: list) -> Tensor:
        ctx.set_materialize_grads(False)   # the steps give no gradient here: nothing to fill
        ctx.steps, ctx.u_dtype = steps, u.dtype
        return u.to(dtype) if dtype != u.dtype else u.view_as(u)

    @staticmethod
    def backward(ctx, _unused):
        if not ctx.steps:
            return None, None, None
        H = torch.cat([h for h, _ in ctx.steps])
        G = torch.cat([g for _, g in ctx.steps])
        ctx.steps.clear()
        if row_buckets.bucketed(H):
            rows = row_buckets.bucket(H.shape[0])
            H, G = row_buckets.padded(H, rows), row_buckets.padded(G, rows)
        return (H.t() @ G).to(ctx.u_dtype), None, None                        # Σ_t h_t^T g_t


def make_cell(cfg: "ModelConfig", input_size: int) -> Recurrent:
    if cfg.cell == "gru":
        return GatedUnit(input_size, cfg.hidden, cfg.gate)
    return UNITS[cfg.cell](input_size, cfg.hidden)


def run_sorted(cell: Recurrent, x: Tensor, h: Tensor, lengths: list[int],
               inside: Tensor | None = None, keep_states: bool = False):
    """Run ``cell`` over a batch sorted by decreasing length.

    ``x`` is (B, T, blocks x H); at step t only the first ``#{lengths > t}`` rows are live, so
    padding costs nothing.  Returns the final states (B, state size), and with ``keep_states``
    every live state as a list of (n_t, state size) tensors, one per step.
    """
    states = []
    n = len(lengths)
    with cell.unrolled():
        for t in range(x.shape[1]):
            while n > 0 and lengths[n - 1] <= t:
                n -= 1
            if n == 0:
                break
            h_live = cell.step(x[:n, t], h[:n], None if inside is None else inside[:n])
            h = h_live if n == h.shape[0] else torch.cat([h_live, h[n:]], 0)
            if keep_states:
                states.append(h_live)
    return h, states


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.src_vocab, cfg.rank)   # e(x): low-rank input matrix, rank-100 factor
        self.cell = make_cell(cfg, cfg.rank)
        self.V = nn.Linear(cfg.hidden, cfg.hidden)            # c = tanh(V h_N)
        _normal_(self.embed.weight)
        _normal_(self.V.weight)
        nn.init.zeros_(self.V.bias)

    def forward(self, src: Tensor, lengths: list[int]) -> Tensor:
        """Summaries ``c`` (B, H) of padded source phrases (B, T) of the given lengths (EOS included)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        idx = torch.tensor(order, device=src.device)
        x = self.cell.W_in(self.embed(src[idx]))             # W e(x_t) + b for every t at once
        h0 = x.new_zeros(len(order), self.cell.state_size)   # h_0 = 0
        hN, _ = run_sorted(self.cell, x, h0, [lengths[i] for i in order])
        c_sorted = torch.tanh(self.V(self.cell.output(hN)))
        return c_sorted.new_empty(c_sorted.shape).index_copy_(0, idx, c_sorted)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        H, E, M, P = cfg.hidden, cfg.rank, cfg.maxout_units, cfg.maxout_pool
        self.hidden, self.maxout_units, self.maxout_pool = H, M, P
        self.reset_before = cfg.gate == "reset-before"
        self.embed = nn.Embedding(cfg.tgt_vocab, E)            # e(y)
        self.cell = make_cell(cfg, E)                          # W', U' (and their gates)
        self.V = nn.Linear(cfg.hidden, H)                      # h'_0 = tanh(V' c)
        self.C = nn.Linear(H, self.cell.blocks * H, bias=False)  # [C_r; C_z; C] c
        self.O_h = nn.Linear(H, M * P)                         # s' = O_h h'_t + O_y e(y_{t-1}) + O_c c (+ b)
        self.O_y = nn.Linear(E, M * P, bias=False)
        self.O_c = nn.Linear(H, M * P, bias=False)
        self.G_r = nn.Linear(M, E, bias=False)                 # G = G_l G_r, rank E
        self.G_l = nn.Linear(E, cfg.tgt_vocab)
        for m in (self.embed, self.V, self.C, self.O_h, self.O_y, self.O_c, self.G_r, self.G_l):
            _normal_(m.weight)
        for m in (self.V, self.O_h, self.G_l):
            nn.init.zeros_(m.bias)

    # -- the pieces, each usable on its own (the scorer shares them across a prefix tree) --
    def constants(self, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What depends on c only, computed once per source phrase:
        the initial state (h'_0 = tanh(V' c)), Cc = [C_r c; C_z c; C c] and O_c c."""
        return self.cell.initial(torch.tanh(self.V(c))), self.C(c), self.O_c(c)

    def input_terms(self, e_prev: Tensor, Cc: Tensor) -> tuple[Tensor, Tensor | None]:
        """The cell's input terms for inputs e(y_{t-1}) (..., E) and Cc broadcast to match.
        Reset-before: C c is an ungated input term; reset-after: it goes inside the reset."""
        x = self.cell.W_in(e_prev)
        if self.reset_before:
            return x + Cc, None
        H = self.hidden
        return torch.cat([x[..., :2 * H] + Cc[..., :2 * H], x[..., 2 * H:]], -1), Cc[..., 2 * H:]

    def log_probs(self, h: Tensor, e_prev: Tensor, Oc: Tensor, candidates: Tensor | None = None) -> Tensor:
        """log p(y_t | y_<t, x) over the target shortlist, for states h'_t (N, state size);
        with ``candidates`` (sorted word ids), the softmax over those words only: the sampled
        softmax of training (``rescorer.trainer``), column j for word ``candidates[j]``."""
        h = self.cell.output(h)
        s_prime = self.O_h(h) + self.O_y(e_prev) + Oc                          # s' = O_h h' + O_y e(y) + O_c c
        s = s_prime.view(-1, self.maxout_units, self.maxout_pool).amax(-1)   # s_i = max(s'_{2i-1}, s'_{2i})
        if candidates is None:
            logits = self.G_l(self.G_r(s))
        else:                                                                # the rows of G_l of V' only
            logits = F.linear(self.G_r(s), self.G_l.weight[candidates], self.G_l.bias[candidates])
        # softmax(G_l G_r s), normalised in float32 at least, also where the products run in bfloat16
        return torch.log_softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32))

    def forward(self, c: Tensor, tgt: Tensor, lengths: list[int], candidates: Tensor | None = None) -> Tensor:
        """Teacher-forced log p(y | x) per pair (B,), for padded targets (B, T) ending in EOS;
        ``candidates``: the softmax over those sorted word ids only, every target word among them."""
        B = tgt.shape[0]
        order = sorted(range(B), key=lambda i: -lengths[i])
        idx = torch.tensor(order, device=tgt.device)
        lens = [lengths[i] for i in order]
        y = tgt[idx]
        h0, Cc, Oc = self.constants(c[idx])
        e = self.embed(y)
        e_prev = torch.cat([e.new_zeros(B, 1, e.shape[-1]), e[:, :-1]], 1)   # e(y_0) = 0
        x, inside = self.input_terms(e_prev, Cc[:, None, :])
        inside = None if inside is None else inside[:, 0]
        _, states = run_sorted(self.cell, x, h0, lens, inside, keep_states=True)
        # gather the live (pair, step) positions, step-major as run_sorted produced them
        rows = torch.cat([torch.arange(s.shape[0], device=tgt.device) for s in states])
        steps = torch.cat([torch.full((s.shape[0],), t, device=tgt.device, dtype=torch.long)
                           for t, s in enumerate(states)])
        logp = self.log_probs(torch.cat(states, 0), e_prev[rows, steps], Oc[rows], candidates)
        y_live = y[rows, steps]
        if candidates is not None:                                           # word id -> its column
            y_live = torch.searchsorted(candidates, y_live)
        tok = logp.gather(1, y_live.unsqueeze(1)).squeeze(1)
        per_sorted = tok.new_zeros(B).index_add_(0, rows, tok)
        return per_sorted.new_empty(B).index_copy_(0, idx, per_sorted)


class RNNEncoderDecoder(nn.Module):
    """``forward(src, src_lengths, tgt, tgt_lengths)`` -> log p(tgt | src) per pair."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, src: Tensor, src_lengths: list[int], tgt: Tensor, tgt_lengths: list[int],
                candidates: Tensor | None = None) -> Tensor:
        return self.decoder(self.encoder(src, src_lengths), tgt, tgt_lengths, candidates)

    def flops_per_token(self) -> dict[str, int]:
        return flops_per_token(self.cfg)


def pad(seqs, device: torch.device | str = "cpu") -> tuple[Tensor, list[int]]:
    """Padded LongTensor (B, T) and lengths of id sequences (padding id 0 is never read)."""
    lengths = [len(s) for s in seqs]
    out = np.zeros((len(seqs), max(lengths)), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out).to(device), lengths
