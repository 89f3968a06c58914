"""experiments/bench_train.py on its small config: today's trainer (from git) and the new paths
trained side by side, and a report a program can read."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT


def test_small_training_benchmark_reports_every_path(moses_table, tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "f6d71b2"], capture_output=True).returncode:
        pytest.skip("today's trainer is taken from git history, which this checkout lacks")
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_train.py"), "--config",
                        str(ROOT / "experiments" / "bench_train-small.ini"), "--work", str(tmp_path / "work"),
                        "--report", str(tmp_path / "report"), "-q"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "report" / "results.json").read_text())
    net = res["networks"]["tiny"]
    assert set(net) == {"model", "today", "by-source", "by-source-bf16", "by-source-sampled"}
    for path in ("today", "by-source", "by-source-bf16", "by-source-sampled"):
        o = net[path]
        for key in ("pairs_per_s", "gflops", "fp32_peak_share", "reference_ppl", "minutes_to_reference_ppl"):
            assert key in o, (path, key)
        assert o["pairs_per_s"] > 0 and 0 < o["fp32_peak_share"] < 1 and len(o["curve"]) >= 2
        assert o["reference_ppl"] == net["today"]["reference_ppl"]
    today = json.loads((tmp_path / "work" / "runs" / "tiny" / "today" / "summary.json").read_text())
    assert net["today"]["reference_ppl"] == pytest.approx(today["best_valid_ppl"], abs=1e-3)
    assert net["today"]["minutes_to_reference_ppl"] == res["minutes"]
    # today's path ran today's trainer, which knew no batching option; the new ones ran the new trainer
    cfg = {p: json.loads((tmp_path / "work" / "runs" / "tiny" / p / "config.json").read_text())["train"]
           for p in ("today", "by-source-bf16", "by-source-sampled")}
    assert "batching" not in cfg["today"]
    assert cfg["by-source-bf16"]["batching"] == "by-source" and cfg["by-source-bf16"]["precision"] == "bf16"
    assert cfg["by-source-sampled"]["sampled_softmax"] == 200
    # the flops per pair of a by-source batch are fewer: the encoder and the shared prefixes once;
    # a sampled softmax's fewer still (its output layer over V' only)
    assert net["by-source-sampled"]["flops_per_pair"] < net["by-source"]["flops_per_pair"] < net["today"]["flops_per_pair"]
    md = (tmp_path / "report" / "results.md").read_text()
    assert "## What this run shows" in md and "tiny network: today's trainer reaches" in md
    assert "Where a step's time goes" in md and (tmp_path / "report" / "curves.png").stat().st_size > 10_000
