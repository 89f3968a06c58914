"""The gated-unit ablation: gradients reaching the encoder states against finite differences,
networks of equal parameter count, and experiments/ablation.py on its small config."""
import json

import numpy as np
import pytest
import torch

from conftest import DATA, ROOT, tiny_model, tiny_vocabs
from experiments import ablation
from rescorer.data import Pairs
from rescorer.gradient_flow import hidden_for_parameters, parameter_count, state_gradient_norms
from rescorer.model import ModelConfig



@pytest.mark.parametrize("cell", ["gru", "lstm", "tanh"])
def test_state_gradients_equal_finite_differences(cell):
    """||dL/dh_t|| for one pair against central differences of the loss in every coordinate of h_t,
    the rest of the encoder run again from the perturbed state."""
    m = tiny_model(cell=cell, dtype=torch.float64, scale=0.4)
    sv, tv = tiny_vocabs()
    src, tgt = sv.ids("the house is blue".split()), tv.ids("la maison bleue".split())
    pairs = Pairs.from_lists([src], [tgt])
    norms = state_gradient_norms(m, pairs)
    assert sorted(norms) == list(range(len(src)))        # one value per source position
    enc = m.encoder
    with torch.no_grad():
        x = enc.cell.W_in(enc.embed(torch.tensor([src])))
        states = [x.new_zeros(1, enc.cell.state_size)]
        for t in range(len(src)):
            states.append(enc.cell.step(x[:, t], states[-1]))

        def loss_from(t, h):  # the loss when the state after step t is h
            for u in range(t + 1, len(src)):
                h = enc.cell.step(x[:, u], h)
            c = torch.tanh(enc.V(enc.cell.output(h)))
            return -m.decoder(c, torch.tensor([tgt]), [len(tgt)]).item()
        for t in range(len(src)):
            h, eps = states[t + 1], 1e-6
            g = np.zeros(h.shape[1])
            for k in range(h.shape[1]):
                d = torch.zeros_like(h)
                d[0, k] = eps
                g[k] = (loss_from(t, h + d) - loss_from(t, h - d)) / (2 * eps)
            mean, count = norms[len(src) - 1 - t]
            assert count == 1 and mean == pytest.approx(np.linalg.norm(g), rel=1e-5)


def test_equal_parameter_counts():
    gru = ModelConfig(5000, 6000, hidden=256, rank=100, maxout_units=128)
    target = parameter_count(gru)
    for cell in ("lstm", "tanh"):
        h = hidden_for_parameters(gru, cell, target)
        n = parameter_count(ModelConfig(**{**gru.to_dict(), "cell": cell, "hidden": h}))
        step = parameter_count(ModelConfig(**{**gru.to_dict(), "cell": cell, "hidden": h + 1})) - n
        assert abs(n - target) <= step      # the nearest size there is
    assert hidden_for_parameters(gru, "lstm", target) < 256 < hidden_for_parameters(gru, "tanh", target)


def test_small_ablation_report(tmp_path):
    if not (DATA / "moses-baseline" / "phrase-table.gz").exists():
        pytest.skip(f"no shared data at {DATA}")
    res = ablation.main(["--config", str(ROOT / "experiments" / "ablation-small.ini"), "--work", str(tmp_path),
                         "--report", str(tmp_path / "report"), "-q"])
    assert set(res["cells"]) == {"gru", "lstm", "tanh"}
    params = [c["parameters"] for c in res["cells"].values()]
    assert max(params) - min(params) < 0.01 * max(params)
    for cell, c in res["cells"].items():
        assert c["summary"]["updates"] == 30 and len(c["valid"]) == len(c["valid_minutes"]) == 4
        for when in ("initial", "trained"):
            g = res["gradients"][cell][when]
            longest = max(int(d) for d in g)
            assert sorted(int(d) for d in g) == list(range(longest + 1))   # one value per source position
            assert all(v[0] > 0 and v[1] > 0 for v in g.values())
    md = (tmp_path / "report" / "ablation.md").read_text()
    assert "| tanh |" in md and "at equal time" in md
    # the findings are made from the numbers: the cells ranked by perplexity at equal time
    ranked = sorted(res["cells"], key=lambda c: res["cells"][c]["best_ppl_at_equal_minutes"])
    line = next(x for x in md.splitlines() if x.startswith("- Validation perplexity, best first"))
    at_time = line.split("at equal time")[1].split(";")[0]
    assert [at_time.index(c) for c in ranked] == sorted(at_time.index(c) for c in ranked)
    for png in ("curves.png", "gradients.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report" / "results.json").read_text())["equal_updates"] == 30
