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
