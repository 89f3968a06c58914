"""Every committed report's Markdown is what its script renders from the results.json beside it:
the reports are generated, and one results structure is all a report is made from."""
import json

import pytest

from conftest import ROOT
from experiments import ablation, bench_decode, bench_scale, bench_train, bench_tune, rnn_gain_report, table1_report

RENDERERS = {"ablation": (ablation.markdown, "ablation.md"), "bench_decode": (bench_decode.report, "results.md"),
             "bench_scale": (bench_scale.markdown, "results.md"), "bench_train": (bench_train.markdown, "results.md"),
             "bench_tune": (bench_tune.report, "results.md"), "rnn_gain": (rnn_gain_report.markdown, "results.md"),
             "table1": (table1_report.markdown, "results.md")}


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_committed_report_is_rendered_from_its_results(name):
    render, md = RENDERERS[name]
    d = ROOT / "experiments" / "results" / name
    results = json.loads((d / "results.json").read_text())
    assert render(results) == (d / md).read_text()


def test_study_says_when_the_held_out_set_does_not_confirm_a_tuning_gain():
    """On the committed study's results, with a tested point's gains set: the sentence appears when the
    held-out gain is under half the tuning set's, and not otherwise."""
    r = json.loads((ROOT / "experiments" / "results" / "rnn_gain" / "results.json").read_text())
    tested = [(arm, s) for arm, a in r["sets"].items() if a.get("test") for s in a["test"]["systems"]
              if s in a["points"]]
    assert tested, "the committed study report has no point with a held-out test"
    arm, point = tested[0]
    dev, test = r["sets"][arm]["points"][point], r["sets"][arm]["test"]["systems"][point]
    dev["delta"] = 0.40
    for held_out in (0.10, 0.30):
        test["delta"] = held_out
        said = [x for x in rnn_gain_report.findings(r) if "does not confirm" in x]
        assert bool(said) == (held_out < 0.20)
        if said:
            assert f"{point} gains +0.40 on the set it was tuned on but +0.10" in said[0]
