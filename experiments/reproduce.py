#!/usr/bin/env python3
"""Table 1 of Cho et al. (2014): Baseline / +RNN / +CSLM+RNN / +CSLM+RNN+WP, in BLEU, measured
as MT research measures (several MERT runs per system, significance, sacrebleu signatures).

    python experiments/reproduce.py --config experiments/table1.ini
    python experiments/reproduce.py --config experiments/table1.ini --add-test NAME SRC REF [PT RT]

From a trained Moses system (its moses.ini; or raw parallel text through build_baseline.py) to
a report, in stages cached under the work directory, each skipped when done and resumable after
kill -9 (training, scoring and MERT continue where they stopped):

  lm            KenLM model, when the system's is missing (lmplz on the LM text)
  filter-SET    the system's tables filtered to each set's source (the tuning set and every test)
  vocab, rnn    15k shortlists; the RNN Encoder-Decoder trained on the unique pairs of the table
  score-SET     every filtered table scored: + exp(log p(e|f)) and exp(-#words outside the
                shortlists) (the WP feature)
  rnn-vs-table-dev  the RNN score's correlation with the table's four scores on the dev table
  ini-SYSTEM    moses.ini of each system
  tune-SYSTEM-K MERT run K of each system, its own seed
  test-SET-SYSTEM  every run's weights decode every test set
                (the systems without the CSLM are tuned and tested first, with the int8 check)
  cslm          the CSLM trained on the LM's text (never on tuning or test references); then
                the systems with the CSLM are tuned and tested
  release       the networks (fp16), shortlists and every tuned moses.ini, beside the report
  cslm-modes-dev    the CSLM by n-best rescoring and in the search, on the dev set
  tune-SYSTEM-K-BOUNDS-bounds  contrast runs with the other MERT bounds (dev set only)
  report        results.md, results.json, results.png: BLEU per run, mean and s.d., difference
                to the baseline, sacrebleu's paired approximate randomization per run, MultEval's
                s_opt, s_sel and one p-value over all runs, tuned weights, perplexities, stage
                costs

A test set added later (in the config or with --add-test) runs only its own stages: filtering
(unless it brings its tables) and scoring its tables with the trained RNN, decoding with the
tuned weights, BLEU and significance.
"""
from __future__ import annotations

import logging
import os

from moses_integration import stages as S
from rescorer.runtime import setup_logging

from experiments.common import ROOT, ConfigError, arguments, errors_exit, stage_records
from experiments.release import ReleaseExperiment
from experiments.table1_config import Config
from experiments.table1_experiment import Experiment
from experiments.table1_report import summary, write_report

log = logging.getLogger("reproduce")


def main(argv: list[str] | None = None) -> dict:
    ap = arguments(__doc__, os.path.join(ROOT, "experiments", "table1.ini"))
    ap.add_argument("--add-test", nargs="+", action="append", default=[], metavar="NAME SRC REF [PT RT]",
                    help="a test set: tokenised source, raw reference, optionally its own filtered phrase and "
                         "reordering tables; kept for later runs (WORK/added-tests.json)")
    ap.add_argument("--release", metavar="DIR",
                    help="translate the --add-test sets with the release in DIR (the report directory of a run: "
                         "models/ and moses/) alone, in a work directory of their own (default: the config's with "
                         "-release appended); nothing is trained or tuned")
    ap.add_argument("--lm", help="with --release: the LM the released inis need (default: the system's, else "
                                 "built from [system] lm-text)")
    a = ap.parse_args(argv)
    with errors_exit(log):  # our errors name the file and line
        if a.lm and not a.release:
            raise ConfigError("--lm goes with --release")
        work = a.work
        if a.release and not work:
            work = Config(a.config, a.data).work + "-release"
        cfg = Config(a.config, a.data, work)
        if a.release:
            cfg.report = os.path.join(cfg.work, "report")
        if a.report:
            cfg.report = os.path.abspath(a.report)
        os.makedirs(cfg.work, exist_ok=True)
        setup_logging(os.path.join(cfg.work, "reproduce.log"), extra=("reproduce",))
        if a.release:
            exp = ReleaseExperiment(cfg, a.release, a.lm, progress=not a.quiet)
        else:
            exp = Experiment(cfg, progress=not a.quiet)
        for spec in a.add_test:
            if len(spec) not in (3, 5):
                raise ConfigError(f"--add-test {' '.join(spec)}: expected NAME SRC REF [PT RT]")
            exp.add_test(*spec)
        if a.run_stage:  # one stage, in the process run_stages started for it
            return S.run_one_stage(exp.stages(), a)
        results = write_report(exp, stage_records(exp.stages, cfg.work, a, exp.run))
        print(summary(results, cfg.report))
        return results


if __name__ == "__main__":
    main()
