"""experiments/rnn_gain.py end to end on experiments/rnn_gain-small.ini: a system built from 2,000
sentence pairs, tiny networks trained for seconds, two tuning sets (news on the system's tables,
Hansard on the whole-table build with a test set), a pair of networks in both directions; then
the report, a rerun that skips every stage, and the config's bad input refused before any stage."""
import gzip
import json
import os
import re
import shutil

import pytest
import sacrebleu
from sacremoses import MosesDetokenizer, MosesDetruecaser

from conftest import DATA, ROOT
from experiments import rnn_gain
from experiments.common import ConfigError
from experiments.rnn_gain import Study
from experiments.rnn_gain_report import findings, table1_reference

SMALL = ROOT / "experiments" / "rnn_gain-small.ini"


def _run(work, *extra):
    return rnn_gain.main(["--config", str(SMALL), "--work", str(work), "--report", str(work / "report"), "-q",
                          *map(str, extra)])


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    if not (DATA / "train" / "hansard.en.gz").exists():
        pytest.skip(f"no shared data at {DATA}")
    work = tmp_path_factory.mktemp("rnn_gain-small")
    return work, _run(work)


def test_report_holds_every_point_of_every_tuning_set(small_study):
    work, r = small_study
    assert list(r["sets"]) == ["news", "hansard"]
    news = r["sets"]["news"]
    assert list(news["points"]) == ["system-16@10", "system-16@20", "whole-24@20", "whole-both"]
    assert list(r["sets"]["hansard"]["points"]) == ["whole-24@20", "whole-both"]
    for a in r["sets"].values():
        assert a["sentences"] == 12 and a["signature"].startswith("nrefs:1|")
        assert len(a["baseline"]["bleu"]) == 2
        for p, d in a["points"].items():
            assert len(d["bleu"]) == len(d["delta_per_run"]) == 2 and d["s_opt"] >= 0
            assert d["delta"] == pytest.approx(d["mean"] - a["baseline"]["mean"])
            assert d["mert_delta"] == pytest.approx(sum(d["mert_dev_bleu"]) / 2 - sum(a["baseline"]["mert_dev_bleu"]) / 2)
            assert 0 < d["p_value_all_runs"] <= 1 and d["ar_signature"].startswith("nrefs:1|ar:10000|")
            assert all(0 <= s <= 1 for s in d["rnn_share"]) and d["valid_ppl"] > 1
            assert -1 <= d["spearman"]["p(target|source)"] <= 1 and 0 <= d["r2_within_source"] <= 1
    # the pair's system has both columns, each with its own tuned weight
    both = news["points"]["whole-both"]
    assert both["kind"] == "pair" and len(both["inverse_share"]) == 2
    tuned = json.loads((work / "sets" / "news" / "tune" / "whole_both" / "run1.json").read_text())
    assert len(tuned["weights"]["TranslationModel0"]) == 7 and tuned["weights"]["TranslationModel0"][5] == 0.0
    # the in-domain set is tested on its development test set, with the weights tuned on it
    t = r["sets"]["hansard"]["test"]
    assert t["name"] == "hansard-devtest" and t["sentences"] == 8
    assert list(t["systems"]) == ["Baseline", "whole-24@20", "whole-both"]
    assert 0 < t["systems"]["whole-24@20"]["p_value_all_runs"] <= 1
    # a pair is tested with both columns: its test table scored by the forward network, then the inverse
    devtest = work / "sets" / "hansard" / "sets" / "hansard_devtest"
    with gzip.open(devtest / "phrase-table.whole_both.gz", "rt") as f:
        assert len(f.readline().split(" ||| ")[2].split()) == 7  # the four of the table, the forward RNN and WP, the inverse RNN
    tested = json.loads((work / "sets" / "hansard" / "tune" / "whole_both" / "run1.json").read_text())
    assert len(tested["weights"]["TranslationModel0"]) == 7
    assert r["best"]["news"]["point"] in news["points"]
    md = (work / "report" / "results.md").read_text()
    assert "## Tuning set news" in md and "| whole-both | whole |" in md and "Tested on hansard-devtest" in md
    for png in ("gain-vs-updates.png", "gain-vs-perplexity.png"):
        assert (work / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shows = md.split("## What this run shows\n\n")[1].split("\n\n")[0]
    assert shows.startswith("- news (12 sentences, the baseline ") and "per doubling of the training" in shows


def test_budgets_are_checkpoints_of_one_training_run(small_study):
    """The second budget continues the first budget's run (the trainer's resume is exact: see
    test_training): one run directory, the updates counted over both."""
    work, r = small_study
    cks = r["networks"]["system-16"]["checkpoints"]
    assert list(cks) == ["10", "20"]
    assert (cks["10"]["updates"], cks["20"]["updates"]) == (10, 20)
    assert cks["20"]["minutes"] > cks["10"]["minutes"] > 0
    assert r["sets"]["news"]["points"]["system-16@20"]["updates"] == 20
    summary = json.loads((work / "networks" / "system_16" / "run" / "summary.json").read_text())
    assert summary["updates"] == 20
    # one run directory, continued; the shortlists shared by the networks of the whole table
    nets = work / "networks"
    assert sorted(p.name for p in nets.iterdir()) == ["system_16", "vocab-system-2000", "vocab-whole-2000",
                                                      "whole_16_inverse", "whole_24"]


def test_report_bleu_equals_sacrebleu_on_the_outputs(small_study):
    work, r = small_study
    refs = (DATA / "dev" / "newstest2012.fr").read_text(encoding="utf-8").splitlines()[:12]
    detok, detrue = MosesDetokenizer(lang="fr"), MosesDetruecaser()
    for name, slug in (("Baseline", "baseline"), ("whole-24@20", "whole_24_20")):
        scores = []
        for k in (1, 2):
            out = (work / "sets" / "news" / "test" / "dev" / slug / f"run{k}.out").read_text(encoding="utf-8")
            hyps = [detok.detokenize(detrue.detruecase(h, return_str=True).split()) for h in out.splitlines()]
            scores.append(sacrebleu.corpus_bleu(hyps, [refs]).score)
        d = r["sets"]["news"]["baseline"] if name == "Baseline" else r["sets"]["news"]["points"][name]
        assert d["bleu"] == pytest.approx(scores, abs=1e-9)


def test_rerun_skips_every_stage(small_study):
    work, r = small_study
    again = _run(work)
    assert all(rec.get("skipped") for rec in again["stages"])
    assert json.loads(json.dumps(again["sets"])) == json.loads(json.dumps(r["sets"]))


def _config(tmp_path, edit):
    text = edit(SMALL.read_text())
    p = tmp_path / "bad.ini"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("points = whole-24@20", "points = whole-24@60"),
     r"bad\.ini: \[tuning hansard\] points: 'whole-24@60': whole-24 is trained to 20 updates only"),
    (lambda t: t.replace("points = whole-24@20", "points = whole-48@20"),
     r"bad\.ini: \[tuning hansard\] points: 'whole-48@20': no \[network whole-48\]"),
    (lambda t: t.replace("[network whole-16-inverse]\ntable = whole", "[network whole-16-inverse]\ntable = system"),
     r"bad\.ini: \[pair whole-both\]: whole-24 learns from the whole table but whole-16-inverse from the system"),
    (lambda t: t.replace("updates = 10 20", "updates = 10 10"),
     r"bad\.ini: \[network system-16\]: updates = '10 10'"),
    (lambda t: t.replace("table = system\nupdates", "table = filtered\nupdates"),
     r"bad\.ini: \[network system-16\]: table = 'filtered'"),
    (lambda t: t.replace("seed = 1234", "seed = 1234\nbatchsize = 3"),
     r"bad\.ini: \[network system-16\] \(or \[rnn\]\) batchsize: not an option of rescorer train"),
    (lambda t: t.replace("[network whole-24]\n", "[network whole-24]\nmax-updates = 5\n"),
     r"bad\.ini: \[network whole-24\]: max-minutes and max-updates are set by the study"),
    (lambda t: t.replace("runs = 2", "runs = 1"), r"bad\.ini: \[tuning\] runs = 1"),
])
def test_bad_config_is_refused_naming_the_key(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message):
        s = Study(_config(tmp_path, edit), str(DATA), str(tmp_path / "work"))
        s.stages()


def test_missing_table_and_uneven_tuning_set_are_refused_before_any_stage(tmp_path):
    (tmp_path / "src.en").write_text("a b\nc d\n")
    (tmp_path / "ref.fr").write_text("x y\n")
    bad = _config(tmp_path, lambda t: t.replace("source = {whole}/corpus/newstest2012.tc.en",
                                                f"source = {tmp_path}/src.en")
                  .replace("reference = {whole}/corpus/newstest2012.tc.fr", f"reference = {tmp_path}/ref.fr")
                  .replace("lines = 1-12\nsystem = system", "system = system"))
    with pytest.raises(ConfigError, match=re.escape(f"[tuning news]: {tmp_path}/src.en has 2 lines but "
                                                    f"{tmp_path}/ref.fr has 1")):
        Study(bad, str(DATA), str(tmp_path / "work")).stages()
    (tmp_path / "ref.fr").write_text("x y\nz\n")
    raw = tmp_path / "raw.fr"
    raw.write_text("X y\nZ\n")
    missing = _config(tmp_path, lambda t: t.replace("source = {whole}/corpus/newstest2012.tc.en",
                                                    f"source = {tmp_path}/src.en")
                      .replace("reference = {whole}/corpus/newstest2012.tc.fr", f"reference = {tmp_path}/ref.fr")
                      .replace("raw-reference = {data}/dev/newstest2012.fr", f"raw-reference = {raw}")
                      .replace("lines = 1-12\nsystem = system", "system = system")
                      .replace("ini = {whole}/model/moses.ini", f"ini = {tmp_path}/nowhere/moses.ini"))
    with pytest.raises(ConfigError, match=re.escape(f"[system] ini = {tmp_path}/nowhere/moses.ini: no such file")):
        Study(missing, str(DATA), str(tmp_path / "work")).stages()
    assert not os.path.exists(tmp_path / "work" / "stamps")


def test_points_of_a_lost_work_directory_are_kept_from_the_report(small_study, tmp_path):
    """A new checkout has no work directory: the report it writes keeps the points the committed
    report measured with the same settings (marked), and drops those whose settings changed."""
    work, _ = small_study
    report = tmp_path / "report"
    report.mkdir()
    shutil.copy(work / "report" / "results.json", report / "results.json")
    # the report on disk, not the fixture's return: a rerun in another test rewrites it (and its time)
    r = json.loads((report / "results.json").read_text())
    again = rnn_gain.main(["--config", str(SMALL), "--work", str(tmp_path / "new"), "--report", str(report), "-q",
                           "--report-only"])
    assert again["pending"] and list(again["sets"]) == ["news", "hansard"]
    for arm, a in r["sets"].items():
        kept = again["sets"][arm]
        assert kept["carried_from"] == r["generated"] and kept["baseline"]["bleu"] == a["baseline"]["bleu"]
        assert list(kept["points"]) == list(a["points"])
        for p, d in kept["points"].items():
            assert d["carried_from"] == r["generated"] and d["delta"] == a["points"][p]["delta"]
    assert again["networks"]["whole-24"]["checkpoints"]["20"]["carried_from"] == r["generated"]
    md = (report / "results.md").read_text()
    assert "| whole-24@20 † (baseline " in md and "(its work directory is gone here)" in md
    # a run on the new work directory measures none of them again: no network trained, no MERT run
    full = rnn_gain.main(["--config", str(SMALL), "--work", str(tmp_path / "new"), "--report", str(report), "-q"])
    assert [rec["stage"] for rec in full["stages"]] == ["whole-build"]
    assert json.loads(json.dumps(full["sets"])) == json.loads(json.dumps(again["sets"]))
    # a network whose options changed: its points are not the same measurement any more
    changed = _config(tmp_path, lambda t: t.replace("[network whole-24]\n", "[network whole-24]\nlr = 0.5\n"))
    third = rnn_gain.main(["--config", changed, "--work", str(tmp_path / "new"), "--report", str(report), "-q",
                           "--report-only"])
    assert list(third["sets"]["news"]["points"]) == ["system-16@10", "system-16@20"]
    assert not third["networks"]["whole-24"]["checkpoints"]
    # ... and are measured again, as any point with --remeasure: every network trained
    pending = {rec["stage"] for rec in third["stages"] if rec.get("pending")}
    assert {"whole_24.train-20", "news.score-whole_24_20", "hansard.tune-whole_24_20-1"} <= pending
    assert "system_16.train-10" not in pending


def test_table1_run_on_the_same_tuning_set_is_shown_beside_the_points(tmp_path):
    standard = ROOT / "experiments" / "rnn_gain.ini"
    t1 = json.loads((ROOT / "experiments" / "results" / "table1" / "results.json").read_text())
    ref = table1_reference(Study(str(standard), str(DATA), str(tmp_path)), "news")
    assert ref["baseline"] == t1["dev"]["Baseline"]["bleu"] and ref["rnn"] == t1["dev"]["+RNN"]["bleu"]
    assert ref["delta"] == pytest.approx(t1["dev"]["+RNN"]["mean"] - t1["dev"]["Baseline"]["mean"])
    assert ref["updates"] == t1["rnn"]["summary"]["updates"] and ref["hidden"] == 500
    # another tuning set or other MERT settings: not the same measurement, refused
    changed = tmp_path / "changed.ini"
    changed.write_text(standard.read_text().replace("lines = 1-1000\nsystem = system", "lines = 1-500\nsystem = system")
                       .replace("restarts = 10", "restarts = 20"))
    with pytest.raises(ValueError, match=r"table1-report = .*\[dev\] lines, \[tuning\] restarts differ"):
        table1_reference(Study(str(changed), str(DATA), str(tmp_path)), "news")


def test_a_network_uses_the_pairs_another_network_of_its_table_prepared(small_study, tmp_path):
    work, _ = small_study
    study = Study(str(SMALL), str(DATA), str(work))
    for net, own in (("whole-24", "whole_24"), ("whole-16-inverse", "whole_16_inverse")):
        run = tmp_path / own
        run.mkdir()
        study._share_prepared_pairs(net, study.whole.table, str(run))
        theirs = work / "networks" / own / "run" / "data"   # the one of the same direction
        assert sorted(p.name for p in (run / "data").iterdir()) == sorted(p.name for p in theirs.iterdir())
        assert os.path.samefile(run / "data" / "meta.json", theirs / "meta.json")
    # no network of the system's table in that direction has prepared pairs from another table
    alone = tmp_path / "alone"
    alone.mkdir()
    study._share_prepared_pairs("system-16", str(work / "no-such-table.gz"), str(alone))
    assert not (alone / "data").exists()


def test_budgets_are_trained_by_compute_and_at_equal_compute_a_point_to_measure_first(small_study, tmp_path):
    """system-16 is trained to 10 updates only on the way to its point at 20; whole-24, made as
    small, has a point at 10: its training and that point's stages come first. A larger network's
    budget comes after a smaller one's of the same updates."""
    work, _ = small_study
    cfg = _config(tmp_path, lambda t: t.replace("hidden = 24\nupdates = 20", "hidden = 16\nupdates = 10 20")
                  .replace("points = all whole-both", "points = system-16@20 whole-24@10"))
    names = [st.name for st in Study(cfg, str(DATA), str(work)).stages()]
    assert names.index("whole_24.train-10") < names.index("news.score-whole_24_10") < names.index("system_16.train-10")
    assert names.index("system_16.train-10") < names.index("system_16.train-20") < names.index("news.score-system_16_20")
    study = Study(str(SMALL), str(DATA), str(work))
    assert study.compute("whole-24", 20) > study.compute("system-16", 20) == 2 * study.compute("system-16", 10)
    names = [st.name for st in study.stages()]
    assert names.index("system_16.train-20") < names.index("whole_24.train-20")


def test_findings_weigh_the_factors_against_the_spread_of_the_mert_runs():
    """Hand-made numbers: the training data's effect is the mean difference at the budgets both
    networks have; smaller than the runs' own spread, it is said not to be shown yet."""

    def point(net, table, m, delta, s_opt):
        return {"kind": "network", "network": net, "table": table, "hidden": 500, "maxout-units": 250,
                "budget_updates": m, "trained_minutes": m / 600, "valid_ppl": 30.0, "delta": delta,
                "p_value_all_runs": 0.3, "s_opt": s_opt, "rnn_share": [0.02, 0.03]}

    def report(s_opt):
        return {"sets": {"news": {"sentences": 1000, "baseline": {"mean": 11.8, "s_opt": 0.05}, "points": {
            "system-500@15k": point("system-500", "system", 15000, 0.10, s_opt),
            "system-500@31k": point("system-500", "system", 31000, 0.05, s_opt),
            "whole-500@15k": point("whole-500", "whole", 15000, 0.40, s_opt)}}}}
    text = " ".join(findings(report(0.10)))
    assert "news, training data: whole-500 (whole) gains +0.30 more than system-500 (system)" in text
    assert "training data moves the gain most (0.30 BLEU" in text and "not shown" not in text
    text = " ".join(findings(report(0.35)))
    assert "less than the spread of the MERT runs themselves (s_opt up to 0.35" in text
