"""Bucketed rows: the products of training's bf16 path on rows padded to a few sizes give the
values and gradients of the products on the rows themselves."""
import contextlib

import pytest
import torch
from torch.nn import functional as F

from rescorer import row_buckets
from rescorer.model import ModelConfig, RNNEncoderDecoder, pad
from rescorer.row_buckets import BucketedRows, bucket
from rescorer.tree import ForestModel, PrefixForest


def test_the_ladder_holds_every_row_count_with_at_most_half_again():
    sizes = sorted({bucket(m) for m in range(1, 5000)})
    assert sizes[:8] == [16, 24, 32, 48, 64, 96, 128, 192]
    assert sizes[-1] == 6144 and len(sizes) == 18     # two sizes an octave
    for m in range(17, 5000):
        assert m <= bucket(m) < 1.5 * m + 1
        assert bucket(bucket(m)) == bucket(m)


def _products(x, w, b, add):
    return [F.linear(x, w, b), torch.addmm(add, x, w.t()), x @ w.t(), torch.mm(x, w.t()), x.matmul(w.t())]


@pytest.mark.parametrize("rows", [1, 17, 37, 100])
def test_padded_products_give_the_rows_values_and_gradients(rows):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 24, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(40, 24, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(40, generator=g, dtype=torch.float64, requires_grad=True)
    add = torch.randn(rows, 40, generator=g, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(rows, 40, generator=g, dtype=torch.float64) for _ in range(5)]

    def run(mode):
        for t in (x, w, b, add):
            t.grad = None
        with BucketedRows() if mode else contextlib.nullcontext():
            outs = _products(x, w, b, add)
        sum((o * k).sum() for o, k in zip(outs, weights)).backward()
        return [o.detach() for o in outs], [t.grad.clone() for t in (x, w, b, add)]

    (outs, grads), (outs_b, grads_b) = run(False), run(True)
    for o, ob in zip(outs + grads, outs_b + grads_b):
        assert o.shape == ob.shape
        torch.testing.assert_close(ob, o, rtol=1e-12, atol=1e-12)


def test_a_bf16_training_step_is_the_plain_autocast_one():
    """The loss and gradients of a by-source bf16 step with bucketed rows, against the same step
    under plain torch.autocast: equal within bfloat16's rounding."""
    torch.manual_seed(0)
    model = RNNEncoderDecoder(ModelConfig(50, 60, 32, 8, 16))
    fm = ForestModel(model)
    g = torch.Generator().manual_seed(3)
    srcs = [torch.randint(1, 50, (int(n),), generator=g).tolist() + [0]
            for n in torch.randint(1, 5, (9,), generator=g)]
    tgts = [torch.randint(1, 60, (int(n),), generator=g).tolist() + [0]
            for n in torch.randint(1, 6, (9,), generator=g)]
    forest = PrefixForest.build(srcs, tgts)

    def step(ctx):
        model.zero_grad()
        with ctx:
            loss = -fm(forest).float().mean()
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])

    plain = step(torch.autocast("cpu", torch.bfloat16))
    bucketed = step(row_buckets.autocast(torch.device("cpu"), True))
    assert bucketed[0] == pytest.approx(plain[0], rel=2e-2)
    cos = F.cosine_similarity(bucketed[1], plain[1], 0).item()
    assert cos > 0.99
    # and fp32 when bf16 is off: the exact step
    exact = step(row_buckets.autocast(torch.device("cpu"), False))
    s, sl = pad(srcs)
    t, tl = pad(tgts)
    model.zero_grad()
    ref = -model(s, sl, t, tl).mean()
    assert exact[0] == pytest.approx(ref.item(), rel=1e-6)
