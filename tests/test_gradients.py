"""Back-propagation against central finite differences, in float64, for both gate forms."""
import pytest
import torch

from rescorer.model import pad

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
