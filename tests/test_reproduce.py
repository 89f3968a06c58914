"""experiments/reproduce.py end to end on experiments/table1-small.ini: a system built from 2,000
sentence pairs, tiny networks, 2 MERT runs per system, 8 test sentences; then the report, a
rerun that skips every stage, a test set added later, and a kill -9 in the middle of MERT."""
import gzip
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import sacrebleu
import torch
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest
from sacremoses import MosesDetokenizer, MosesDetruecaser
from sklearn.linear_model import LinearRegression

from conftest import DATA, ROOT
from experiments import reproduce
from experiments import table1_config, table1_experiment, table1_stats
from experiments.common import ConfigError
from experiments.common import read_lines
from experiments.release import ReleaseExperiment
from experiments.table1_experiment import Experiment
from experiments.table1_config import Config
from experiments.table1_report import collapses, feature_steps, findings
from experiments.table1_stats import table_correlations, table_fit
from moses_integration.cli import register as moses_register
from moses_integration.moses_ini import MosesIni
from rescorer.checkpoint import load_checkpoint
from rescorer.cli import build_parser, register
from rescorer.cli import main as rescorer
from rescorer.cslm import load_cslm_checkpoint
from rescorer.model import pad


SMALL = ROOT / "experiments" / "table1-small.ini"


def _run(work, *extra):
    return reproduce.main(["--config", str(SMALL), "--work", str(work), "--report", str(work / "report"), "-q",
                           *map(str, extra)])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    if not (DATA / "train" / "hansard.en.gz").exists():
        pytest.skip(f"no shared data at {DATA}")
    work = tmp_path_factory.mktemp("table1-small")
    results = _run(work)
    return work, results


def _stages(work):
    with open(work / "stages.json") as f:
        return {r["stage"]: r for r in json.load(f)}


def test_report_holds_every_system_run_and_test(small_run):
    work, r = small_run
    systems = ["Baseline", "+RNN", "+CSLM", "+CSLM+RNN", "+CSLM+RNN+WP"]
    assert list(r["systems"]) == systems and r["runs"] == 2
    t = r["tests"]["newstest2012-tail"]
    assert t["sentences"] == 8 and t["signature"].startswith("nrefs:1|")
    for s in systems:
        d = t["systems"][s]
        assert len(d["bleu"]) == 2 and d["s_sel"] >= 0 and d["s_opt"] >= 0
        if s != "Baseline":
            assert len(d["p_value_per_run"]) == 2
            assert all(0 < p <= 1 for p in d["p_value_per_run"] + [d["p_value_all_runs"]])
            assert d["ar_signature"].startswith("nrefs:1|ar:10000|")
        assert r["weights"][s][0]["seed"] != r["weights"][s][1]["seed"]  # each run its own seed
    # the neural weights exist where the system has the feature, and nowhere else
    assert r["weights"]["Baseline"][0]["RNN"] is None and r["weights"]["+RNN"][0]["RNN"] is not None
    for runs in r["weights"].values():  # the WordPenalty weight each MERT iteration decoded with
        assert all(len(w["word_penalty_per_iteration"]) == len(w["dev_bleu_per_iteration"]) > 0 for w in runs)
    assert all(w["WP"] == 0.0 for w in r["weights"]["+RNN"])  # the WP column is there, untuned
    assert r["weights"]["+CSLM"][0]["CSLM0"] is not None and r["weights"]["+RNN"][0]["CSLM0"] is None
    assert r["rnn"]["summary"]["updates"] == 20 and r["cslm"]["summary"]["updates"] == 20
    pp = t["perplexity"]
    assert pp["tokens"] > 8 and pp["kenlm"] > 1 and pp["cslm"] > 1
    # the share of sentences a system translates differently from the baseline, run k against run k
    out = work / "test" / "newstest2012_tail"
    lines = {(s, k): (out / s / f"run{k}.out.detok").read_text().splitlines() for s in ("baseline", "rnn") for k in (1, 2)}
    differ = [sum(a != b for a, b in zip(lines["baseline", k], lines["rnn", k])) / 8 for k in (1, 2)]
    assert t["systems"]["+RNN"]["changed_vs_baseline"] == pytest.approx(sum(differ) / 2)
    own = sum(a != b for a, b in zip(lines["baseline", 1], lines["baseline", 2])) / 8
    assert t["systems"]["Baseline"]["changed_between_runs"] == pytest.approx(own)
    md = (work / "report" / "results.md").read_text()
    assert "| +CSLM+RNN+WP |" in md and "33.30" in md and "s_opt" in md
    assert "Sentences translated differently from the baseline" in md
    for png in ("results.png", "networks.png"):
        assert (work / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stages = _stages(work)
    assert all(stages[f"tune-{s}-{k}"]["peak_memory_mb"] > 0 for s in ("baseline", "cslm_rnn_wp") for k in (1, 2))
    # the CSLM both ways on the dev set, with +CSLM's first tuned weights
    cm = r["cslm_modes"]
    assert cm["system"] == "+CSLM" and cm["sentences"] == 12
    assert all(0 <= cm[m]["dev_bleu"] <= 100 and cm[m]["decode_seconds"] > 0 for m in ("nbest", "search"))
    assert "## The CSLM by n-best rescoring or in the search" in md
    # n-best mode with the n-gram LM standing in for the CSLM in the search (the default)
    assert r["cslm_mode"] == "nbest" and r["cslm_standin"] == "LM0"
    assert "with CSLM0's weight added to LM0's" in md
    shows = md.split("## What this run shows\n\n")[1].split("\n\n")[0]
    assert shows.startswith("- On newstest2012-tail, against the baseline's ") and "+CSLM+RNN+WP " in shows


def test_report_only_runs_nothing_and_reports_the_finished_systems(small_run, tmp_path, capsys):
    """While a run goes on, --report-only writes the report of the stages done so far: a system
    whose tuning is not complete, and the contrast runs, are left out and listed as pending."""
    work, r = small_run
    stamps = work / "stamps"
    pending = ["tune-cslm_rnn_wp-2", "test-newstest2012_tail-cslm_rnn_wp", "tune-cslm_rnn-1-positive-bounds"]
    moved = []
    try:
        for name in pending:
            (stamps / f"{name}.json").rename(tmp_path / f"{name}.json")
            moved.append(name)
        (stamps / "tune-cslm_rnn_wp-2.started.json").write_text("{}")
        before = sorted(p.name for p in stamps.iterdir() if p.name != "hashes.json")
        res = reproduce.main(["--config", str(SMALL), "--work", str(work), "--report", str(tmp_path / "interim"),
                              "-q", "--report-only"])
        after = sorted(p.name for p in stamps.iterdir() if p.name != "hashes.json")
    finally:
        (stamps / "tune-cslm_rnn_wp-2.started.json").unlink(missing_ok=True)
        for name in moved:
            (tmp_path / f"{name}.json").rename(stamps / f"{name}.json")
    assert after == before   # no stage ran
    # and the release, whose outputs go to the report directory, another one here
    assert res["pending"] == [s for s in (rec["stage"] for rec in r["stages"]) if s in pending + ["release"]]
    t = res["tests"]["newstest2012-tail"]["systems"]
    assert list(t) == ["Baseline", "+RNN", "+CSLM", "+CSLM+RNN"] and "+CSLM+RNN+WP" not in res["dev"]
    full = json.loads(json.dumps(r["tests"]["newstest2012-tail"]["systems"]))
    assert json.loads(json.dumps(t)) == {s: full[s] for s in t}
    assert "precision_check" in res and "contrast_bounds" not in res
    md = (tmp_path / "interim" / "results.md").read_text()
    assert "**Interim report**" in md and "(tune-cslm_rnn_wp-2 begun)" in md
    assert "not yet tuned and tested: +CSLM+RNN+WP" in md and "| tune-cslm_rnn_wp-2 | begun, not done |" in md
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"report (interim, 4 stages pending): {tmp_path / 'interim' / 'results.md'}"
    b = t["+RNN"]
    assert printed[-2].startswith(f"newstest2012-tail BLEU: Baseline {t['Baseline']['mean']:.2f} ± ")
    assert f"+RNN {b['mean']:.2f} ± {b['s_opt']:.2f} ({b['delta']:+.2f}, p = " in printed[-2]
    with pytest.raises(SystemExit):
        reproduce.main(["--config", str(SMALL), "--work", str(work), "-q", "--report-only", "--force"])


def test_each_mert_run_starts_from_its_own_weights(small_run):
    """start = perturbed: the runs of a system start apart (each weight times a factor in [1/2, 2])
    and so end apart; the untuned unknown-word penalty keeps its weight."""
    work, r = small_run
    for slug in ("baseline", "rnn"):
        runs = [json.loads((work / "tune" / slug / f"run{k}.json").read_text()) for k in (1, 2)]
        a, b = (np.array(t["start_weights"]) for t in runs)
        assert runs[0]["start"] == "perturbed" and not np.allclose(a, b)
        moved = b != 0                       # a weight of 0 (a column the system does not use) stays 0
        ratio = a[moved] / b[moved]
        assert np.all((ratio >= 0.25 - 1e-9) & (ratio <= 4 + 1e-9)) and np.all(a[~moved] == 0)
    flat = lambda t: np.concatenate([v for v in t["weights"].values()])  # noqa: E731
    assert any(not np.allclose(flat(json.loads((work / "tune" / s / "run1.json").read_text())),
                               flat(json.loads((work / "tune" / s / "run2.json").read_text())))
               for s in ("baseline", "rnn", "cslm"))


def test_int8_table_is_decoded_with_the_fp32_weights_and_reported(small_run):
    """[rnn] check-precision = int8: the +RNN system's test table scored in int8, decoded with
    every run's fp32-tuned weights; the score differences recomputed from the two tables."""
    work, r = small_run
    pc = r["precision_check"]
    assert pc["precision"] == "int8" and pc["system"] == "+RNN"
    t = pc["tests"]["newstest2012-tail"]
    assert t["fp32"] == r["tests"]["newstest2012-tail"]["systems"]["+RNN"]["bleu"]
    assert len(t["int8"]) == 2 and t["difference"] == pytest.approx([b - a for a, b in zip(t["fp32"], t["int8"])])
    sets = work / "sets" / "newstest2012_tail"

    def column(name):
        with gzip.open(sets / name, "rb") as f:
            return [max(math.log(float(x.split(b" ||| ")[2].split()[4]) or 1e-300), -100.0) for x in f]
    exact, approx = column("phrase-table.rnn.gz"), column("phrase-table.rnn.int8.gz")
    diffs = [abs(a - b) for a, b in zip(exact, approx)]
    assert t["scores"]["pairs"] == len(exact) == len(approx) > 0
    assert t["scores"]["max_abs_diff"] == pytest.approx(max(diffs)) and 0 < max(diffs) < 1.0
    assert t["scores"]["mean_abs_diff"] == pytest.approx(sum(diffs) / len(diffs))
    ini = (work / "systems" / "rnn" / "moses.newstest2012_tail.int8.ini").read_text()
    assert "phrase-table.rnn.int8.gz" in ini
    md = (work / "report" / "results.md").read_text()
    assert "## Scoring in int8 instead of fp32" in md


def test_report_bleu_equals_sacrebleu_on_the_outputs(small_run):
    """BLEU, its mean, s_opt and the difference recomputed from the decoder's raw outputs with
    sacremoses and sacrebleu directly."""
    work, r = small_run
    refs = (DATA / "dev" / "newstest2012.fr").read_text(encoding="utf-8").splitlines()[12:20]
    detok, detrue = MosesDetokenizer(lang="fr"), MosesDetruecaser()
    t = r["tests"]["newstest2012-tail"]["systems"]
    for s, slug in (("Baseline", "baseline"), ("+CSLM+RNN", "cslm_rnn")):
        scores = []
        for k in (1, 2):
            out = (work / "test" / "newstest2012_tail" / slug / f"run{k}.out").read_text(encoding="utf-8").splitlines()
            hyps = [detok.detokenize(detrue.detruecase(h, return_str=True).split()) for h in out]
            scores.append(sacrebleu.corpus_bleu(hyps, [refs]).score)
        assert t[s]["bleu"] == pytest.approx(scores, abs=1e-9)
        assert t[s]["mean"] == pytest.approx(np.mean(scores))
        assert t[s]["s_opt"] == pytest.approx(np.std(scores, ddof=1))
    assert t["+CSLM+RNN"]["delta"] == pytest.approx(t["+CSLM+RNN"]["mean"] - t["Baseline"]["mean"])


def test_collapses_are_iterations_below_half_the_runs_best():
    runs = [{"dev_bleu_per_iteration": [10.0, 1.5, 12.0, 13.0], "word_penalty_per_iteration": [-1.0, -9.0, -3.0, -2.0]},
            {"dev_bleu_per_iteration": [11.0, 12.0], "word_penalty_per_iteration": [-2.5, -2.0]},
            # a poor start (the first iteration decodes with the start weights) is not MERT collapsing
            {"dev_bleu_per_iteration": [4.0, 12.0, 13.0], "word_penalty_per_iteration": [-7.0, -2.0, -2.5]}]
    c = collapses(runs)
    assert c == {"runs": 3, "runs_with_collapse": 1, "word_penalty_at_collapse": [-9.0],
                 "word_penalty_median_otherwise": -2.0}


def test_findings_are_sentences_made_from_the_reports_numbers():
    """The report's "What this run shows" on hand-made numbers: significance over all runs at
    0.05, a difference within the tuning runs' spread said so, the paper's gain beside it, what
    each feature adds, the sum of the single-feature gains against the combined one, the neural
    weights' shares of the L1 norm, and the collapses."""

    def sysd(delta, p, s_opt):
        return {"mean": 20 + delta, "delta": delta, "s_opt": s_opt, "p_value_all_runs": p}
    t = {"systems": {"Baseline": {"mean": 20.0, "s_opt": 0.1}, "+RNN": sysd(0.05, 0.44, 0.05),
                     "+CSLM": sysd(0.3, 0.01, 0.2), "+CSLM+RNN": sysd(0.4, 0.001, 0.1)},
         "feature_steps": [{"feature": "rnn", "without": "Baseline", "delta": 0.05, "p_value_all_runs": 0.44},
                           {"feature": "rnn", "without": "+CSLM", "delta": 0.1, "p_value_all_runs": 0.2}]}
    run = {"RNN": None, "CSLM0": None, "WP": None, "LM0": 1.0, "l1": 10.0,
           "dev_bleu_per_iteration": [10.0, 12.0, 13.0], "word_penalty_per_iteration": [-1, -2, -2]}
    weights = {"Baseline": [run], "+RNN": [dict(run, RNN=0.5, WP=0.0)], "+CSLM": [dict(run, CSLM0=0.2)],
               "+CSLM+RNN": [dict(run, RNN=0.3, CSLM0=0.1, dev_bleu_per_iteration=[10.0, 4.0, 13.0])]}
    r = {"tests": {"news": t}, "weights": weights,
         "systems": {"Baseline": [], "+RNN": ["rnn"], "+CSLM": ["cslm"], "+CSLM+RNN": ["rnn", "cslm"]}}
    f = findings(r, "Baseline")
    assert f[0] == ("On news, against the baseline's 20.00 BLEU, over all runs at p < 0.05: +RNN +0.05 "
                    "(p = 0.4400, not significant; no larger than the spread of the tuning runs, s_opt 0.10; "
                    "the paper: +0.57), +CSLM +0.30 (p = 0.0100, significant), +CSLM+RNN +0.40 (p = 0.0010, "
                    "significant; the paper: +1.34).")
    assert f[1] == "RNN adds +0.05 to Baseline (p = 0.4400) and +0.10 to +CSLM (p = 0.2000)."
    assert f[2] == "+CSLM+RNN: the gains of its features alone add up to +0.35; together they give +0.40."
    assert f[3].endswith("RNN 3.0% to 5.0%, CSLM0 1.0% to 2.0%, LM0 10.0% to 10.0%.")  # +RNN's WP is off
    assert f[4] == ("MERT runs with a collapse (an iteration after the first decoding the dev set below half of "
                    "its run's best BLEU): +CSLM+RNN 1 of 1.")


def test_feature_steps_pair_the_systems_one_added_feature_apart():
    systems = {"Baseline": [], "+RNN": ["rnn"], "+CSLM": ["cslm"], "+CSLM+RNN": ["cslm", "rnn"],
               "+CSLM+RNN+WP": ["cslm", "rnn", "wp"]}
    assert feature_steps(systems) == [("Baseline", "+RNN", "rnn"), ("Baseline", "+CSLM", "cslm"),
                                      ("+RNN", "+CSLM+RNN", "cslm"), ("+CSLM", "+CSLM+RNN", "rnn"),
                                      ("+CSLM+RNN", "+CSLM+RNN+WP", "wp")]
    assert feature_steps({"A": [], "B": ["cslm", "rnn"]}) == []


def test_what_each_feature_adds_against_sacrebleu_on_the_runs_together(small_run):
    """The RNN on top of the CSLM: the difference of means and sacrebleu's paired approximate
    randomization on both systems' runs concatenated, computed here from the outputs."""
    work, r = small_run
    t = r["tests"]["newstest2012-tail"]
    step = next(x for x in t["feature_steps"] if x["without"] == "+CSLM" and x["with"] == "+CSLM+RNN")
    assert step["feature"] == "rnn"
    assert step["delta"] == pytest.approx(t["systems"]["+CSLM+RNN"]["mean"] - t["systems"]["+CSLM"]["mean"])
    refs = (DATA / "dev" / "newstest2012.fr").read_text(encoding="utf-8").splitlines()[12:20]
    out = work / "test" / "newstest2012_tail"
    runs = {s: [x for k in (1, 2) for x in (out / s / f"run{k}.out.detok").read_text(encoding="utf-8").splitlines()]
            for s in ("cslm", "cslm_rnn")}
    _, scores = PairedTest([("a", runs["cslm"]), ("b", runs["cslm_rnn"])], {"BLEU": BLEU()}, [refs * 2],
                           test_type="ar", n_samples=0)()
    assert step["p_value_all_runs"] == pytest.approx(scores["BLEU"][1].p_value)
    base = next(x for x in t["feature_steps"] if x["without"] == "Baseline" and x["with"] == "+RNN")
    assert base["p_value_all_runs"] == t["systems"]["+RNN"]["p_value_all_runs"]
    md = (work / "report" / "results.md").read_text()
    assert "| RNN | +CSLM | +CSLM+RNN |" in md
    rows = [f"| {s} | 1 | {r['weights'][s][0]['seed']} | " for s in ("+RNN", "+CSLM+RNN", "+CSLM+RNN+WP")]
    lines = {row: next(line for line in md.splitlines() if line.startswith(row)) for row in rows}
    assert " | off | " in lines[rows[0]] and " | off | " in lines[rows[1]] and " | off | " not in lines[rows[2]]


def test_rerun_skips_every_stage(small_run):
    work, r = small_run
    again = _run(work)
    assert all(rec.get("skipped") for rec in again["stages"])
    assert again["tests"] == r["tests"] and again["weights"] == r["weights"]


def test_a_test_set_added_later_runs_only_its_own_stages(small_run, tmp_path):
    work, r = small_run
    corpus = work / "build" / "corpus"
    src, ref = tmp_path / "extra.en", tmp_path / "extra.fr"
    src.write_text("\n".join((corpus / "newstest2012.tc.en").read_text().splitlines()[14:20]) + "\n")
    ref.write_text("\n".join((DATA / "dev" / "newstest2012.fr").read_text().splitlines()[14:20]) + "\n")
    res = _run(work, "--add-test", "extra", src, ref)
    ran = sorted(rec["stage"] for rec in res["stages"] if not rec.get("skipped"))
    systems = ["baseline", "rnn", "cslm", "cslm_rnn", "cslm_rnn_wp"]
    assert ran == sorted(["filter-extra", "score-extra"] + [f"ini-{s}-extra" for s in systems]
                         + [f"test-extra-{s}" for s in systems]
                         + ["score-extra-int8", "ini-rnn-extra-int8", "test-extra-rnn-int8"])
    assert res["tests"]["extra"]["sentences"] == 6
    assert res["tests"]["newstest2012-tail"] == r["tests"]["newstest2012-tail"]
    # kept for later runs
    assert "extra" in _run(work)["tests"]


def test_kill_9_during_mert_then_resume_gives_the_same_report(small_run):
    work, r = small_run
    before = json.loads((work / "report" / "results.json").read_text())
    # forget the +RNN system's first MERT run and what followed from it, then run again and kill
    # the run with SIGKILL once that MERT run has saved its first iteration
    for name in ("tune-rnn-1", "test-newstest2012_tail-rnn"):
        (work / "stamps" / f"{name}.json").unlink()
    for p in ("tune/rnn/run1.json", "tune/rnn/run1.mert.npz", "test/newstest2012_tail/rnn/run1.out"):
        (work / p).unlink()
    cmd = [sys.executable, str(ROOT / "experiments" / "reproduce.py"), "--config", str(SMALL), "--work", str(work),
           "--report", str(work / "report"), "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    state = work / "tune" / "rnn" / "run1.mert.npz"
    deadline = time.time() + 600   # generous: a loaded machine decodes slowly
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert state.exists(), "the MERT run never saved its state"
    os.kill(proc.pid, signal.SIGKILL)  # the stage's own process dies with it (PDEATHSIG)
    proc.wait()
    assert not (work / "tune" / "rnn" / "run1.json").exists()
    time.sleep(0.5)
    res = _run(work)
    ran = {rec["stage"] for rec in res["stages"] if not rec.get("skipped")}
    # and nothing else: a test set added earlier is not decoded again, as the resumed MERT run
    # wrote the same tuned moses.ini (stage inputs are compared by content)
    assert ran == {"tune-rnn-1", "test-newstest2012_tail-rnn"}
    log = (work / "reproduce.log").read_text()
    assert "stage tune-rnn-1: resuming" in log
    assert json.loads(json.dumps(res["weights"])) == before["weights"]
    assert json.loads(json.dumps(res["tests"])) == before["tests"]


def test_release_holds_the_networks_in_fp16_and_every_tuned_ini(small_run):
    work, r = small_run
    rel = work / "report"
    for name, load in (("rnn", load_checkpoint), ("cslm", load_cslm_checkpoint)):
        raw = torch.load(rel / "models" / f"{name}.pt", weights_only=False)
        assert raw["trainer"] is None and all(v.dtype == torch.float16 for v in raw["model"].values()
                                              if v.is_floating_point())
        load(rel / "models" / f"{name}.pt")  # loads as a float32 network
    full = load_checkpoint(work / "rnn" / "run" / "best.pt")
    half = load_checkpoint(rel / "models" / "rnn.pt")
    assert half["src_vocab"] == full["src_vocab"] and half["tgt_vocab"] == full["tgt_vocab"]
    for side in ("source", "target"):
        assert (rel / "models" / f"{side}.vocab").read_bytes() == (work / "rnn" / "vocab" / f"{side}.vocab").read_bytes()
    for s, runs in r["weights"].items():
        slug = {"Baseline": "baseline", "+RNN": "rnn", "+CSLM": "cslm", "+CSLM+RNN": "cslm_rnn",
                "+CSLM+RNN+WP": "cslm_rnn_wp"}[s]
        for k in (1, 2):
            tuned = json.loads((work / "tune" / slug / f"run{k}.json").read_text())["weights"]
            ini = MosesIni.read(rel / "moses" / slug / f"run{k}.ini")
            assert set(ini.weights()) == set(tuned) - {"CSLM0"}
            for g, w in ini.weights().items():
                assert w == pytest.approx(tuned[g], rel=1e-5, abs=1e-9)  # written with 6 digits
            paths = {f.name: f.get("path") for f in ini.features() if f.get("path")}
            assert paths["TranslationModel0"] == ("phrase-table.rnn.gz" if "RNN" in s else "phrase-table.gz")
            assert all("/" not in p for p in paths.values())  # base names, to be pointed at a set's files
            text = (rel / "moses" / slug / f"run{k}.ini").read_text()
            assert text.startswith(f"# {s}, MERT run {k} (seed ") and ("CSLM0=" in text) == ("CSLM" in s)
            if "CSLM" in s:  # the search weight of the stand-in: LM0's plus CSLM0's
                lm = tuned["LM0"][0] + tuned["CSLM0"][0]
                search = re.search(r"-weight-overwrite 'LM0= (\S+)'", text)
                assert float(search.group(1)) == pytest.approx(lm, rel=1e-5, abs=1e-9)
                assert f"rescorer rerank --ini run{k}.ini --weights 'CSLM0= " in text
                line = re.search(r"# All of it with the built-in decoder: rescorer (.*)", text).group(1)
                a = build_parser(register, moses_register).parse_args(shlex.split(line))
                assert (a.ini, a.cslm, a.cslm_standin) == (f"run{k}.ini", "cslm.pt", "LM0")
                assert a.cslm_weight == pytest.approx(tuned["CSLM0"][0], rel=1e-5, abs=1e-9)
    md = (rel / "results.md").read_text()
    assert "## Released with this report" in md and "(models/rnn.pt)" in md and "[run2.ini](moses/cslm_rnn/run2.ini)" in md
    assert set(r["release"]["models"]) == {"models/rnn.pt", "models/cslm.pt", "models/source.vocab",
                                           "models/target.vocab"}


def _extra_set(work, tmp_path, first, last):
    corpus = work / "build" / "corpus"
    src, ref = tmp_path / "new.en", tmp_path / "new.fr"
    src.write_text("\n".join((corpus / "newstest2012.tc.en").read_text().splitlines()[first:last]) + "\n")
    ref.write_text("\n".join((DATA / "dev" / "newstest2012.fr").read_text().splitlines()[first:last]) + "\n")
    return src, ref


def test_a_new_test_set_is_translated_with_the_release_alone(small_run, tmp_path, capsys):
    """--release: from the release's models and inis, the given tables and LM only, in a work
    directory of its own: every system's every run decodes the set, as the run's own work
    directory decodes it (same bytes), and the report's BLEU is rescorer evaluate's."""
    work, r = small_run
    model = work / "build" / "model"
    src, ref = _extra_set(work, tmp_path, 14, 20)
    tables = [model / "phrase-table.gz", model / "reordering-table.wbe-msd-bidirectional-fe.gz"]
    rel_work = tmp_path / "release-work"
    res = reproduce.main(["--config", str(SMALL), "--release", str(work / "report"), "--work", str(rel_work), "-q",
                          "--add-test", "new", str(src), str(ref), *map(str, tables),
                          "--lm", str(work / "build" / "lm" / "lm.fr.binary")])
    ran = sorted(rec["stage"] for rec in res["stages"])
    systems = ["baseline", "rnn", "cslm", "cslm_rnn", "cslm_rnn_wp"]
    assert ran == sorted(["filter-new", "score-new"] + [f"ini-{s}-new" for s in systems]
                         + [f"weights-{s}-{k}" for s in systems for k in (1, 2)] + [f"test-new-{s}" for s in systems])
    t = res["tests"]["new"]
    assert t["sentences"] == 6 and list(t["systems"]) == list(r["systems"])
    assert all(len(d["bleu"]) == 2 for d in t["systems"].values())
    assert all(0 < t["systems"][s]["p_value_all_runs"] <= 1 for s in t["systems"] if s != "Baseline")
    md = (rel_work / "report" / "results.md").read_text()
    assert "Test sets translated with the release in" in md and "| +CSLM+RNN+WP |" in md
    # each run's ini points at the set's files
    ini = (rel_work / "systems" / "cslm_rnn" / "new" / "run2.ini").read_text()
    assert f"path={rel_work}/sets/new/phrase-table.rnn.gz" in ini and "lm.fr.binary" in ini
    # the same outputs as the run's own work directory gives the same set (the set that
    # test_a_test_set_added_later_runs_only_its_own_stages adds: skipped here when it ran)
    _run(work, "--add-test", "extra", src, ref)
    for s in systems:
        for k in (1, 2):
            assert ((rel_work / "test" / "new" / s / f"run{k}.out").read_bytes()
                    == (work / "test" / "extra" / s / f"run{k}.out").read_bytes())
    capsys.readouterr()
    assert rescorer(["evaluate", "--input", str(rel_work / "test" / "new" / "cslm_rnn" / "run1.out"),
                     "--ref", str(ref)]) == 0
    printed = capsys.readouterr().out
    assert float(re.search(r"BLEU = ([\d.]+)", printed).group(1)) == pytest.approx(
        t["systems"]["+CSLM+RNN"]["bleu"][0], abs=0.005)


def test_a_release_missing_a_file_its_inis_need_is_refused_naming_the_role(small_run, tmp_path):
    work, _ = small_run
    rel = tmp_path / "release"
    shutil.copytree(work / "report" / "models", rel / "models")
    shutil.copytree(work / "report" / "moses", rel / "moses")
    (rel / "models" / "cslm.pt").unlink()
    src, ref = _extra_set(work, tmp_path, 14, 16)
    cfg = table1_config.Config(str(SMALL), str(DATA), str(tmp_path / "w"))
    with pytest.raises(ConfigError, match=re.escape(f"{rel}/moses/cslm/run1.ini: the cslm needs models/cslm.pt, "
                                                    f"which the release {rel} does not have")):
        ReleaseExperiment(cfg, str(rel))
    shutil.copy(work / "report" / "models" / "cslm.pt", rel / "models" / "cslm.pt")
    exp = ReleaseExperiment(table1_config.Config(str(SMALL), str(DATA), str(tmp_path / "w")), str(rel))
    exp.add_test("new", str(src), str(ref))
    with pytest.raises(ConfigError, match=r"table1-small\.ini: no system ini .* give --lm"):
        exp.stages()
    assert not (tmp_path / "w" / "stamps").exists()


def test_contrast_runs_show_on_the_dev_set_what_the_bounds_change(small_run):
    work, r = small_run
    cb = r["contrast_bounds"]
    assert cb["bounds"] == "moses" and cb["other"] == "positive" and list(cb["systems"]) == ["+CSLM+RNN"]
    rows = cb["systems"]["+CSLM+RNN"]
    assert [(x["run"], x["bounds"]) for x in rows] == [(1, "moses"), (1, "positive")]
    assert rows[0]["seed"] == rows[1]["seed"]
    bounded = json.loads((work / "tune-bounds-positive" / "cslm_rnn" / "run1.json").read_text())
    assert bounded["bounds"] == "positive" and rows[1]["dev_bleu"] == bounded["dev_bleu"]
    assert bounded["start_weights"] == json.loads((work / "tune" / "cslm_rnn" / "run1.json").read_text())["start_weights"]
    assert rows[1]["negative_log_prob_weights"] == []  # the bounds hold
    assert all(len(x["dev_bleu_per_iteration"]) == 3 for x in rows)  # 2 iterations and the last decode
    assert "### What the bounds change, on the dev set" in (work / "report" / "results.md").read_text()
    assert "tune-cslm_rnn-1-positive-bounds" in _stages(work)


def test_rnn_against_the_table_is_computed_on_the_dev_table(small_run):
    work, r = small_run
    c = r["rnn_vs_table"]
    with gzip.open(work / "sets" / "dev" / "phrase-table.rnn.gz", "rt") as f:
        lines = f.read().splitlines()
    assert c["pairs"] == len(lines) and c["sources"] == len({x.split(" ||| ")[0] for x in lines})
    assert set(c["columns"]) == {"p(source|target)", "lex(source|target)", "p(target|source)", "lex(target|source)"}
    assert all(-1 <= x["pearson"] <= 1 and -1 <= x["spearman"] <= 1 for x in c["columns"].values())
    fit = c["linear_fit"]
    assert fit["pairs"] == len(lines) and 0 <= fit["lex_within_source"] <= fit["within_source"] <= 1
    text = (work / "report" / "results.md").read_text()
    assert "## Does the RNN score repeat the phrase table's?" in text
    assert f"within each source's targets (each variable minus its source's mean) {fit['within_source']:.3f}" in text


def test_table_correlations_against_a_direct_computation():
    rng = np.random.default_rng(0)
    sources = ["a"] * 6 + ["b"] * 5 + ["c"] * 2
    scores = rng.uniform(0.01, 1.0, size=(13, 6))
    scores[3, 2] = 0.0  # Moses reads a 0 as ln -> -100
    c = table_correlations(sources, scores, min_targets=5)
    logs = np.log(np.where(scores > 0, scores, math.exp(-100)))
    assert c["pairs"] == 13 and c["sources"] == 3 and c["sources_with_enough_targets"] == 2
    for j, name in enumerate(["p(source|target)", "lex(source|target)", "p(target|source)", "lex(target|source)"]):
        x = c["columns"][name]
        assert x["pearson"] == pytest.approx(np.corrcoef(logs[:, j], logs[:, 4])[0, 1])

        def ranks(v):
            return np.argsort(np.argsort(v))  # no ties in uniform draws
        assert x["spearman"] == pytest.approx(np.corrcoef(ranks(logs[:, j]), ranks(logs[:, 4]))[0, 1])
        within = [np.corrcoef(ranks(logs[g, j]), ranks(logs[g, 4]))[0, 1] for g in (slice(0, 6), slice(6, 11))]
        assert x["spearman_within_source"] == pytest.approx(np.mean(within))


def test_table_fit_against_an_independent_regression():
    rng = np.random.default_rng(1)
    sources = ["a b"] * 7 + ["c"] * 5 + ["d e f"] * 4
    targets = [" ".join("w" * (k + 1) for k in range(rng.integers(1, 5))) for _ in sources]
    scores = rng.uniform(0.01, 1.0, size=(16, 6))
    scores[2, 1] = 0.0  # Moses reads a 0 as ln -> -100
    fit = table_fit(sources, targets, scores)
    logs = np.log(np.where(scores > 0, scores, math.exp(-100)))
    tlen = np.array([len(t.split()) for t in targets], float)
    feats = np.column_stack([logs[:, :4], tlen])
    # within a source: each variable minus its source's mean, computed source by source
    x, y = feats.copy(), logs[:, 4].copy()
    for s in set(sources):
        rows = [i for i, t in enumerate(sources) if t == s]
        x[rows] -= feats[rows].mean(axis=0)
        y[rows] -= logs[rows, 4].mean()
    assert fit["within_source"] == pytest.approx(LinearRegression().fit(x, y).score(x, y))
    assert fit["lex_within_source"] == pytest.approx(LinearRegression().fit(x[:, [3]], y).score(x[:, [3]], y))
    slen = np.array([len(s.split()) for s in sources], float)
    xa = np.column_stack([feats, slen])
    assert fit["all_pairs"] == pytest.approx(LinearRegression().fit(xa, logs[:, 4]).score(xa, logs[:, 4]))
    # an RNN score that is a weighting of lex(target|source) and the length plus a constant per
    # source is explained entirely within sources
    scores[:, 4] = np.exp(0.7 * logs[:, 3] - 0.3 * tlen + np.array([{"a b": 1.0, "c": -2.0, "d e f": 0.5}[s]
                                                                    for s in sources]))
    assert table_fit(sources, targets, scores)["within_source"] == pytest.approx(1.0)
    assert table_fit(sources, targets, scores)["lex_within_source"] < 1.0


def test_score_differences_reads_the_column_as_moses_and_names_a_short_table(tmp_path):
    line = "a ||| b ||| 0.1 0.2 0.3 0.4 {} 1 ||| 0-0 ||| 1 1 1\n"
    exact, approx = tmp_path / "exact.gz", tmp_path / "approx.gz"
    with gzip.open(exact, "wt") as f:
        f.write(line.format("0.5") + line.format("0"))
    with gzip.open(approx, "wt") as f:
        f.write(line.format("0.25") + line.format("1e-50"))   # 1e-50: ln is -115, Moses reads -100
    d = table1_stats.score_differences(str(exact), str(approx))
    assert d["pairs"] == 2 and d["max_abs_diff"] == pytest.approx(math.log(2))
    assert d["mean_abs_diff"] == pytest.approx(math.log(2) / 2)
    with gzip.open(approx, "wt") as f:
        f.write(line.format("0.25"))
    with pytest.raises(ValueError, match=f"{approx}: ends at line 1"):
        table1_stats.score_differences(str(exact), str(approx))


def test_mert_starts_the_cslm_with_a_share_of_the_standin_weight(small_run):
    """n-best mode with LM0 standing in for the CSLM: CSLM0 starts at [cslm] start-share of LM0's
    start weight and LM0 at the rest, so the search starts from the weights of the system without
    the CSLM (before each run's perturbation)."""
    work, _ = small_run
    exp = Experiment(table1_config.Config(str(SMALL), None, str(work)), progress=False)
    src = read_lines(exp.set_files("dev", exp.cfg.dev, "", "")["source"])
    _, groups_b, w_b = exp.decoder("Baseline", frozenset(), "dev", src[:2])
    _, groups_c, w_c = exp.decoder("+CSLM", frozenset({"cslm"}), "dev", src[:2])
    names = [g[0] for g in groups_c]
    assert names[-1] == "CSLM0" and [g[0] for g in groups_b] == names[:-1]
    lm = sum(n for _, n, _ in groups_c[:names.index("LM0")])   # LM0's place in the weight vector
    share = exp.cslm_start_share
    assert w_c[-1] == pytest.approx(share * w_b[lm]) and w_c[lm] == pytest.approx((1 - share) * w_b[lm])
    search = np.delete(w_c, -1)
    search[lm] += w_c[-1]
    assert search == pytest.approx(w_b)   # the search's start weights are the baseline's


def test_training_keys_are_the_commands_own_options(tmp_path):
    """[rnn] and [cslm] keys are the training commands' flags: a new option (batching) passes
    through without a list to update, a key that is no option is refused, naming it."""
    if not (DATA / "train" / "hansard.en.gz").exists():
        pytest.skip(f"no shared data at {DATA}")
    text = (ROOT / "experiments" / "table1.ini").read_text()
    good = tmp_path / "good.ini"
    text = re.sub(r"\n(batching|per-source) = .*", "", text)  # the standard config's own, given again below
    good.write_text(text.replace("[rnn]\n", "[rnn]\nbatching = by-source\nper-source = 8\ninverse = false\n", 1)
                    .replace("[cslm]\n", "[cslm]\ntext = {data}/moses-baseline/train.clean.fr.gz\n", 1))
    exp = Experiment(Config(str(good), None, str(tmp_path / "w")), progress=False)
    rnn = next(s for s in exp.stages() if s.name == "rnn")
    opts = rnn.settings["options"]
    assert opts[opts.index("--batching") + 1] == "by-source" and opts[opts.index("--per-source") + 1] == "8"
    assert "--inverse" not in opts and opts[opts.index("--hidden") + 1] == "500"
    inverse = next(s for s in exp.stages() if s.name == "rnn-inverse").settings["options"]   # directions = both
    assert inverse == opts + ["--inverse"]
    cslm = next(s for s in exp.stages() if s.name == "cslm")      # [cslm] text is the experiment's, not a flag
    assert "--text" not in cslm.settings["options"] and "--input" not in cslm.settings["options"]
    assert cslm.inputs[0].endswith("train.clean.fr.gz")
    bad = tmp_path / "bad.ini"
    bad.write_text(text.replace("[rnn]\n", "[rnn]\nbatchsize = 256\n", 1))
    with pytest.raises(ConfigError, match=r"bad\.ini: \[rnn\] batchsize: not an option of rescorer train"):
        Experiment(Config(str(bad), None, str(tmp_path / "w2")), progress=False).stages()


def test_the_rnn_can_learn_from_the_whole_table_while_the_system_decodes_with_its_own(tmp_path, monkeypatch):
    """[whole] build makes the whole phrase table of a system's training text before any stage
    ({whole}); [rnn] table = {whole}/... trains the network (and draws its shortlists) there,
    while the sets' tables stay the system's, filtered."""
    if not (DATA / "moses-baseline" / "moses.ini").exists():
        pytest.skip(f"no shared data at {DATA}")
    text = (ROOT / "experiments" / "table1.ini").read_text()
    # the standard config without its [whole] section, [rnn] table and [work] previous, given here
    text = re.sub(r"\n(table|previous) = .*", "", re.sub(r"\[whole\]\n(.*\n)*?\n", "", text))
    ini = tmp_path / "whole.ini"
    ini.write_text(text.replace("[rnn]\n", "[rnn]\ntable = {whole}/model/phrase-table.gz\n", 1)
                   + "\n[whole]\nbuild = experiments/baseline.ini\n")
    work = tmp_path / "w"
    exp = Experiment(Config(str(ini), None, str(work)), progress=False)
    whole_table = str(work / "whole" / "model" / "phrase-table.gz")
    stages = {s.name: s for s in exp.stages()}
    assert stages["vocab"].inputs == [whole_table] and stages["rnn"].inputs[0] == whole_table
    shared_table = str(DATA / "moses-baseline" / "phrase-table.gz")
    assert shared_table in stages["filter-dev"].inputs and whole_table not in stages["filter-dev"].inputs
    # run(): the build first (its own stages skip what is done), then the experiment's stages
    calls = []
    monkeypatch.setattr(table1_experiment.build_baseline, "build",
                        lambda *a, **k: calls.append(a) or {"seconds": 0.0, "skipped": True, "peak_memory_mb": 1})
    monkeypatch.setattr(exp, "run_stages", lambda force=False: [{"stage": "vocab"}])
    records = exp.run()
    assert calls == [("experiments/baseline.ini", str(work / "whole"), exp.cfg.data, None, False)]
    assert [r["stage"] for r in records] == ["whole-build", "vocab"]
    # another experiment's build of the same config, named by [whole] dir, is shared
    # with the same sets as that experiment's, so that the build's stages are found done
    ini.write_text(ini.read_text() + "dir = {work}/../study/whole\nsets = dev/hansard-dev\n")
    whole = Config(str(ini), None, str(work)).whole
    assert (whole.dir, whole.sets) == (str(tmp_path / "study" / "whole"), "dev/hansard-dev")
    bad = tmp_path / "bad.ini"
    bad.write_text(text.replace("[rnn]\n", "[rnn]\ntable = {wholly}/model/phrase-table.gz\n", 1))
    with pytest.raises(ConfigError, match=r"bad\.ini: .*unknown placeholder 'wholly'"):
        Experiment(Config(str(bad), None, str(work)), progress=False).stages()
    bad.write_text(text.replace("[work]\n", "[work]\nprevious = nowhere/results.json\n", 1))
    with pytest.raises(ConfigError, match=r"bad\.ini: \[work\] previous = nowhere/results.json: no such file"):
        Config(str(bad), None, str(work))


def test_the_previous_networks_run_is_shown_beside_this_one(small_run, tmp_path):
    """[work] previous = an earlier run's results.json: the report keeps that run's network and
    its BLEU per system beside this run's (here the same run: every difference is 0)."""
    work, _ = small_run
    earlier = work / "report" / "results.json"   # as the module's tests left it (a test set may have been added)
    r = json.loads(earlier.read_text())
    ini = tmp_path / "again.ini"
    ini.write_text(SMALL.read_text().replace("[work]\n", f"[work]\nprevious = {earlier}\n", 1))
    res = reproduce.main(["--config", str(ini), "--work", str(work), "--report", str(tmp_path / "report"), "-q",
                          "--report-only"])
    prev = res["previous"]
    assert prev["rnn"]["summary"] == r["rnn"]["summary"] and prev["dev"] == {s: d["bleu"] for s, d in r["dev"].items()}
    assert prev["tests"] == {t: {s: d["bleu"] for s, d in x["systems"].items()} for t, x in r["tests"].items()}
    md = (tmp_path / "report" / "results.md").read_text()
    section = md[md.index("## Beside the previous network"):]
    t = r["tests"]["newstest2012-tail"]["systems"]
    rnn = f"{t['+RNN']['mean']:.2f} ({t['+RNN']['mean'] - t['Baseline']['mean']:+.2f})"
    assert f"| +RNN | {rnn} | {rnn} | +0.00 |" in section
    assert f"{r['rnn']['summary']['updates']:,} updates" in section


def test_both_directions_add_the_inverse_networks_column_to_every_rnn_system(small_run, tmp_path):
    """[rnn] directions = both: a second network with the same options trained with --inverse,
    its log p(source|target) a seventh column after the RNN's and WP's (checked against the
    network's own teacher-forced forward pass), tuned with the +RNN system, released beside the
    forward network, and a wrong value refused naming the key."""
    work, _ = small_run
    both_work = tmp_path / "both"
    shutil.copytree(work / "build", both_work / "build")  # the same system, not built again
    text = SMALL.read_text().replace("[rnn]\n", "[rnn]\ndirections = both\n", 1)
    text = re.sub(r"\[systems\]\n(.*\n)*?\n", "[systems]\nBaseline =\n+RNN = rnn\n\n", text, count=1)
    text = re.sub(r"contrast-[a-z]+ = .*\n", "", text)
    ini = tmp_path / "both.ini"
    ini.write_text(text)
    r = reproduce.main(["--config", str(ini), "--work", str(both_work), "--report", str(tmp_path / "report"), "-q"])
    assert r["pending"] == []
    done = _stages(both_work)
    assert {"rnn", "rnn-inverse", "score-dev-inverse", "score-newstest2012_tail-inverse",
            "score-newstest2012_tail-inverse-int8"} <= set(done)
    inv = load_checkpoint(both_work / "rnn-inverse" / "run" / "best.pt")
    fwd = load_checkpoint(both_work / "rnn" / "run" / "best.pt")
    assert inv["inverse"] and not fwd["inverse"]
    assert set(inv["src_vocab"].words) == set(fwd["tgt_vocab"].words)   # the same shortlists, the other way
    scored = both_work / "sets" / "dev" / "phrase-table.rnn.gz"
    forward_only = both_work / "sets" / "dev" / "phrase-table.rnn-forward.gz"
    with gzip.open(scored, "rt", encoding="utf-8") as f, gzip.open(forward_only, "rt", encoding="utf-8") as g:
        lines = [(a.split(" ||| "), b.split(" ||| ")) for a, b in zip(f, g)]
    model = inv["model"].eval()
    for a, b in lines[:40:3]:
        assert a[:2] == b[:2] and a[2].split()[:6] == b[2].split()
        src, tgt, cols = a[0], a[1], [float(x) for x in a[2].split()]
        assert len(cols) == 7
        # p(source | target): the target phrase is the inverse network's input
        s_ids, t_ids = inv["src_vocab"].ids(tgt.split()), inv["tgt_vocab"].ids(src.split())
        with torch.no_grad():
            x, xl = pad([s_ids])
            y, yl = pad([t_ids])
            expected = model(x, xl, y, yl)[0].item()
        assert math.log(cols[6]) == pytest.approx(expected, abs=1e-4)
    # every run tuned the two columns; the report and the release hold both networks
    res = json.loads((tmp_path / "report" / "results.json").read_text())
    assert all(w["RNN-inverse"] is not None and w["RNN"] is not None for w in res["weights"]["+RNN"])
    assert all(w["RNN-inverse"] is None for w in res["weights"]["Baseline"])
    assert res["rnn-inverse"]["summary"]["updates"] == res["rnn"]["summary"]["updates"]
    tpc = res["precision_check"]["tests"]["newstest2012-tail"]
    assert tpc["scores_inverse"]["pairs"] == tpc["scores"]["pairs"] > 0
    md = (tmp_path / "report" / "results.md").read_text()
    assert "trained the other way, p(source|target)" in md and "| RNN inverse |" in md
    assert "two columns, the RNN Encoder–Decoder's log p(target|source)" in md.split("## ")[0]
    models = tmp_path / "report" / "models"
    assert (models / "rnn.pt").exists() and (models / "rnn-inverse.pt").exists()
    released = (tmp_path / "report" / "moses" / "rnn" / "run1.ini").read_text()
    assert "column 7: the inverse network's" in released
    bad = tmp_path / "bad.ini"
    bad.write_text(text.replace("directions = both", "directions = backward"))
    with pytest.raises(ConfigError, match=r"bad\.ini: \[rnn\] directions = 'backward': expected forward"):
        Config(str(bad), None, str(tmp_path / "w"))
