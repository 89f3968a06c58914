"""Back-propagation against central finite differences, in float64, for both gate forms."""
import contextlib

import pytest
import torch

from rescorer.model import ModelConfig, make_cell, pad

from conftest import check_finite_differences, tiny_model, tiny_vocabs


@pytest.mark.parametrize("gate", ["reset-before", "reset-after"])
def test_gradients_equal_finite_differences(gate):
    m = tiny_model(gate, torch.float64, scale=0.3, hidden=4, rank=3, maxout=3)
    sv, tv = tiny_vocabs()
    pairs = [("the house is", "la maison"), ("a cat", "un chat est bleue"), ("blue", "bleue")]
    s, sl = pad([sv.ids(a.split()) for a, _ in pairs])
    t, tl = pad([tv.ids(b.split()) for _, b in pairs])

    def loss():
        return -m(s, sl, t, tl).mean()

    # every parameter tensor, a few coordinates each
    checked = check_finite_differences(m, loss, per_tensor=4)
    assert checked >= 4 * 15


def test_gradcheck_whole_network():
    m = tiny_model("reset-before", torch.float64, scale=0.3, hidden=3, rank=2, maxout=2)
    sv, tv = tiny_vocabs()
    s, sl = pad([sv.ids("the cat".split()), sv.ids("blue".split())])
    t, tl = pad([tv.ids("un chat".split()), tv.ids("bleue la".split())])
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())

    def f(*ps):
        out = torch.func.functional_call(m, dict(zip(names, ps)), (s, sl, t, tl))
        return out.sum()

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell,gate", [("gru", "reset-before"), ("gru", "reset-after"), ("lstm", "reset-before"),
                                       ("tanh", "reset-before")])
def test_an_unrolls_recurrent_gradient_equals_autograds_step_by_step(cell, gate):
    """Inside ``unrolled()`` U's gradient is one product over the steps (``_RecurrentBlock``);
    outside, autograd sums a product per step: the same gradients, in float64 and, with rows
    of changing counts padded, in bfloat16 within its precision."""
    torch.manual_seed(5)
    unit = make_cell(ModelConfig(10, 10, hidden=6, gate=gate, cell=cell), input_size=4).double()
    rows = [7, 7, 5, 2]                     # live rows per step, as a tree level or a sorted batch
    x = [torch.randn(n, unit.blocks * 6, dtype=torch.float64) for n in rows]
    h0 = torch.randn(7, unit.state_size, dtype=torch.float64)
    w = [torch.randn(n, unit.state_size, dtype=torch.float64) for n in rows]

    def grads(unrolled: bool, dtype=torch.float64):
        unit.zero_grad(set_to_none=True)
        xs = [t.clone().requires_grad_() for t in x]
        h, loss = h0, 0.0
        with contextlib.ExitStack() as stack:
            if unrolled:
                stack.enter_context(unit.unrolled())
            if dtype != torch.float64:
                stack.enter_context(torch.autocast("cpu", dtype))
            for xt, wt in zip(xs, w):
                h = unit.step(xt, h[:xt.shape[0]])
                loss = loss + (h.double() * wt).sum()
        loss.backward()
        return [unit.U.grad.clone()] + [t.grad for t in xs]

    for mine, ref in zip(grads(True), grads(False)):
        assert torch.allclose(mine, ref, atol=1e-12)
    unit.float()
    x, h0, w = [t.float() for t in x], h0.float(), [t.float() for t in w]
    ref = grads(False)
    for mine, r in zip(grads(True, torch.bfloat16), ref):
        assert mine.dtype == torch.float32 and torch.allclose(mine, r, atol=0.05 * r.abs().max().item())
