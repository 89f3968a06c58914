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

import json
import logging
import math
import os
import shutil
import time

import numpy as np

from moses_integration import pipeline as P
from moses_integration import stages as S
from moses_integration.bleu import Reference
from moses_integration.decoder import DecoderConfig, FeatureLayout
from moses_integration.mert import default_ranges, one_best_bleu, tunable_mask, tune
from moses_integration.moses_ini import MosesIni, format_weight
from moses_integration.phrase_tables import filter_table, read_columns, source_spans
from moses_integration.runner import BuiltinDecoder, RescoredDecoder
from rescorer import cli as rescorer_cli
from rescorer.fileio import atomic_write
from rescorer.runtime import setup_logging

from experiments import build_baseline
from experiments.common import ConfigError, arguments, errors_exit, read_lines, stage_records, vocab_stage
from experiments.table1_config import ROLES, ROOT, Config, slug, train_args, variant
from experiments.table1_report import summary, write_report
from experiments.table1_stats import perturbed_start, score_differences, table_correlations, tuned_weights

log = logging.getLogger("reproduce")


# -- the experiment -------------------------------------------------------------------------------
class Experiment:
    def __init__(self, cfg: Config, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        W = cfg.work
        self.d = {k: os.path.join(W, k) for k in ("lm", "rnn", "cslm", "sets", "systems", "tune", "test")}
        self.added = os.path.join(W, "added-tests.json")
        if os.path.exists(self.added):
            with open(self.added) as f:
                for name, t in json.load(f).items():
                    cfg.tests.setdefault(name, t)
        t = cfg.section("tuning")
        self.runs = int(t.get("runs", 3))
        self.seed = int(t.get("seed", 1))
        self.cslm_mode = cfg.get("cslm", "mode", "nbest")
        if self.cslm_mode not in ("nbest", "search"):
            raise ConfigError(f"{cfg.path}: [cslm] mode = {self.cslm_mode!r}: expected nbest or search")
        # n-best mode: the search feature whose weight also carries CSLM0's (RescoredDecoder)
        standin = cfg.get("cslm", "search-standin", "LM0").strip()
        self.cslm_standin = None if standin == "none" else standin
        # with a stand-in, MERT starts CSLM0 at this share of the stand-in's weight and the stand-in
        # at the rest: the search starts from the weights of the system without the CSLM
        self.cslm_start_share = float(cfg.get("cslm", "start-share", "0.5"))
        self.cslm_start_weight = float(t.get("cslm-start-weight", 0.5))  # CSLM0 in search mode, or without a stand-in
        if not 0 < self.cslm_start_share < 1:
            raise ConfigError(f"{cfg.path}: [cslm] start-share = {self.cslm_start_share}: expected a number "
                              "between 0 and 1")
        self.bounds = t.get("bounds", "moses")
        if self.bounds not in ("moses", "positive"):
            raise ConfigError(f"{cfg.path}: [tuning] bounds = {self.bounds!r}: expected moses or positive")

    def add_test(self, name: str, src: str, ref: str, pt: str | None = None, rt: str | None = None) -> None:
        t = {"source": os.path.abspath(src), "reference": os.path.abspath(ref), "lines": None,
             "tokenised-reference": None, "phrase-table": os.path.abspath(pt) if pt else None,
             "reordering-table": os.path.abspath(rt) if rt else None}
        for k in ("source", "reference", "phrase-table", "reordering-table"):
            if t[k] and not os.path.exists(t[k]):
                raise ConfigError(f"--add-test {name}: {t[k]} does not exist")
        added = {}
        if os.path.exists(self.added):
            with open(self.added) as f:
                added = json.load(f)
        added[name] = t
        os.makedirs(self.cfg.work, exist_ok=True)
        with atomic_write(self.added, "w") as f:
            json.dump(added, f, indent=1)
        self.cfg.tests[name] = t

    # -- the system ---------------------------------------------------------------------------
    def system(self) -> tuple[MosesIni, str, str, str, list[S.Stage]]:
        """The system's ini, phrase table, reordering table and LM, and the stages that make them."""
        cfg = self.cfg
        stages = []
        if cfg.build:
            ini_path = os.path.join(cfg.work, "build", "model", "moses.ini")
        else:
            ini_path = cfg.p(cfg.get("system", "ini", ""))
        if not os.path.exists(ini_path):
            raise ConfigError(f"{cfg.path}: [system] ini = {ini_path}: no such file")
        ini = MosesIni.read(ini_path)
        base = os.path.dirname(ini_path)

        def path_of(kind: str) -> str:
            f = next((f for f in ini.features() if f.kind == kind), None)
            if f is None:
                raise ConfigError(f"{ini_path}: no {kind} feature")
            p = f.get("path") or ""
            return p if os.path.isabs(p) else os.path.join(base, p)
        pt, rt, lm = path_of("PhraseDictionaryMemory"), path_of("LexicalReordering"), path_of("KENLM")
        if not os.path.exists(lm):
            texts = [cfg.p(t) for t in cfg.get("system", "lm-text", "").split()]
            if not texts:
                raise ConfigError(f"{cfg.path}: the system's LM {lm} does not exist; give [system] lm-text = to build it")
            order = int(cfg.get("system", "lm-order", "5"))
            lm = os.path.join(self.d["lm"], "lm.binary")

            def run_lm():
                P.build_lm(texts, order, lm + ".arpa", lm, self.d["lm"])
                os.unlink(lm + ".arpa")
                return {"order": order, "size_mb": round(os.path.getsize(lm) / 2**20, 1)}
            os.makedirs(self.d["lm"], exist_ok=True)
            stages.append(S.Stage("lm", texts, [lm], run_lm, {"order": order}))
        return ini, pt, rt, lm, stages

    def sets(self) -> dict[str, dict]:
        out = {"dev": dict(self.cfg.dev, kind="dev")}
        for name, t in self.cfg.tests.items():
            out[name] = dict(t, kind="test")
        return out

    def set_files(self, name: str, s: dict, pt: str, rt: str) -> dict:
        d = os.path.join(self.d["sets"], slug(name))
        own = bool(s.get("phrase-table"))
        return {"dir": d, "source": os.path.join(d, "source.txt"),
                "pt": s["phrase-table"] if own else os.path.join(d, "phrase-table.gz"),
                "rt": s["reordering-table"] if own else os.path.join(d, "reordering-table.gz"),
                "scored": os.path.join(d, "phrase-table.rnn.gz"), "own": own}

    # -- stages ------------------------------------------------------------------------------
    def stages(self) -> list[S.Stage]:
        cfg = self.cfg
        ini, pt, rt, lm, stages = self.system()
        self.lm_path = lm
        sets = self.sets()
        files = {n: self.set_files(n, s, pt, rt) for n, s in sets.items()}
        for name, s in sets.items():
            stages.append(self._filter_stage(name, s, files[name], pt, rt))
        need_rnn = any("rnn" in f for f in cfg.systems.values())
        need_cslm = any("cslm" in f for f in cfg.systems.values())
        r = cfg.section("rnn")
        vocab_dir = os.path.join(self.d["rnn"], "vocab")
        run_dir = os.path.join(self.d["rnn"], "run")
        rnn_table = cfg.p(r["table"]) if r.get("table", "").strip() else pt
        if need_rnn or need_cslm:
            stages.append(vocab_stage(rnn_table, vocab_dir, int(r.get("shortlist", 15000))))
        if need_rnn:
            stages.append(self._rnn_stage(rnn_table, vocab_dir, run_dir, r))
            for name in sets:
                stages.append(self._score_stage(name, files[name], os.path.join(run_dir, "best.pt")))
            stages.append(self._correlation_stage(files["dev"]))
        for sysname, feats in cfg.systems.items():
            for name in sets:
                stages.append(self._ini_stage(sysname, feats, ini, name, files[name], lm))
        # the systems without the CSLM are tuned and tested before the CSLM is trained, so that
        # Baseline against +RNN, what the experiment is first about, comes hours earlier
        for with_cslm in (False, True):
            group = {n: f for n, f in cfg.systems.items() if ("cslm" in f) == with_cslm}
            if with_cslm and need_cslm:
                stages.append(self._cslm_stage(vocab_dir, lm))
            for sysname, feats in group.items():
                for k in range(1, self.runs + 1):
                    stages.append(self._tune_stage(sysname, feats, k))
            for name, s in sets.items():
                if s["kind"] == "test":
                    for sysname, feats in group.items():
                        stages.append(self._test_stage(name, s, sysname, feats))
            check = self.precision_check()
            if check and not with_cslm:
                precision, sysname = check
                feats = cfg.systems[sysname]
                for name, s in sets.items():
                    if s["kind"] == "test":
                        f = dict(files[name], scored=self.scored_path(files[name], precision))
                        stages.append(self._score_stage(name, f, os.path.join(run_dir, "best.pt"), precision,
                                                        reference=files[name]["scored"]))
                        stages.append(self._ini_stage(sysname, feats, ini, name, f, lm, precision))
                        stages.append(self._test_stage(name, s, sysname, feats, precision))
        stages.append(self._release_stage(vocab_dir if need_rnn or need_cslm else None,
                                          os.path.join(run_dir, "best.pt") if need_rnn else None, need_cslm))
        modes = self.cslm_modes_system()
        if modes:
            stages.append(self._modes_stage(modes, cfg.systems[modes]))
        contrast = self.contrast()
        if contrast:
            bounds, names, runs = contrast
            for sysname in names:
                for k in range(1, runs + 1):
                    stages.append(self._tune_stage(sysname, cfg.systems[sysname], k, bounds))
        return stages

    def contrast(self) -> tuple[str, list[str], int] | None:
        """([tuning] contrast-bounds, contrast-systems, contrast-runs) the other bounds, the systems
        tuned with them too (on the dev set only: their weights decode no test set) and how many of
        their runs; None when not asked."""
        t = self.cfg.section("tuning")
        bounds = t.get("contrast-bounds", "").strip()
        if not bounds:
            return None
        where = f"{self.cfg.path}: [tuning] contrast-bounds = {bounds!r}"
        if bounds not in ("moses", "positive"):
            raise ConfigError(f"{where}: expected moses or positive")
        if bounds == self.bounds:
            raise ConfigError(f"{where}: the same as bounds = {self.bounds}")
        names = t.get("contrast-systems", "").split() or [self.cfg.baseline]
        for n in names:
            if n not in self.cfg.systems:
                raise ConfigError(f"{self.cfg.path}: [tuning] contrast-systems: no system {n!r} "
                                  f"(systems: {', '.join(self.cfg.systems)})")
        runs = int(t.get("contrast-runs", 1))
        if not 1 <= runs <= self.runs:
            raise ConfigError(f"{self.cfg.path}: [tuning] contrast-runs = {runs}: expected 1 to runs = {self.runs}")
        return bounds, names, runs

    def precision_check(self) -> tuple[str, str] | None:
        """([rnn] check-precision) the reduced precision whose table the +RNN system is tested
        with too, with its fp32 tuned weights, and that system's name; None when not asked."""
        precision = self.cfg.section("rnn").get("check-precision", "").strip()
        if not precision:
            return None
        if precision not in ("bf16", "int8"):
            raise ConfigError(f"{self.cfg.path}: [rnn] check-precision = {precision!r}: expected bf16 or int8")
        name = next((n for n, f in self.cfg.systems.items() if f == frozenset({"rnn"})), None)
        if name is None:
            raise ConfigError(f"{self.cfg.path}: [rnn] check-precision needs a system with the rnn feature alone")
        return precision, name

    @staticmethod
    def scored_path(f: dict, precision: str = "fp32") -> str:
        return variant(f["scored"][:-len(".gz")], precision, ".") + ".gz"

    def _filter_stage(self, name: str, s: dict, f: dict, pt: str, rt: str) -> S.Stage:
        def run():
            src = read_lines(s["source"], s["lines"])
            P.write_lines(f["source"], src)
            if f["own"]:
                return {"sentences": len(src), "tables": "its own"}
            n = filter_table(pt, src, f["pt"], overwrite=True, progress=self.progress)
            m = filter_table(rt, src, f["rt"], overwrite=True, progress=self.progress)
            return {"sentences": len(src), "phrase_pairs": n, "reordering_lines": m}
        outs = [f["source"]] + ([] if f["own"] else [f["pt"], f["rt"]])
        ins = [s["source"]] + ([f["pt"], f["rt"]] if f["own"] else [pt, rt])
        return S.Stage(f"filter-{slug(name)}", ins, outs, run, {"lines": s["lines"]}, isolated=False)

    def _train_args(self, section: str, r: dict, command: str) -> list[str]:
        return train_args(f"{self.cfg.path}: [{section}]", r, command)

    def _rnn_stage(self, table: str, vocab_dir: str, run_dir: str, r: dict) -> S.Stage:
        opts = self._train_args("rnn", r, "train")

        st = S.Stage("rnn", [table, os.path.join(vocab_dir, "target.vocab")],
                     [os.path.join(run_dir, "summary.json"), os.path.join(run_dir, "best.pt")], None,
                     {"options": opts})

        def run():
            return self._train("train", ["--phrase-table", table, "--vocab", vocab_dir], run_dir, opts, st.resume)
        st.run = run
        return st

    def _train(self, command: str, inputs: list[str], out: str, opts: list[str], resume: bool) -> dict:
        """``rescorer train`` or ``cslm-train``: continued where an interrupted attempt stopped
        (``resume``), else from scratch in an emptied directory."""
        resume = resume and os.path.exists(os.path.join(out, "last.pt"))
        if not resume and os.path.exists(out):
            shutil.rmtree(out)
        if rescorer_cli.main([command, *inputs, "--out", out] + opts + (["--resume"] if resume else [])
                + ([] if self.progress else ["-q"])) != 0:
            raise RuntimeError(f"rescorer {command} failed")
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        return {"updates": s["updates"], "minutes": round(s["minutes"], 1), "best_valid_ppl": round(s["best_valid_ppl"], 2)}

    def _score_stage(self, name: str, f: dict, model: str, precision: str = "fp32",
                     reference: str | None = None, table: str | None = None, unk_count: bool = True) -> S.Stage:
        """The set's table (or ``table``) scored by the RNN: ``f["scored"]`` with the RNN's column and,
        with ``unk_count``, the WP column; in reduced precision, also how far its scores are from
        the fp32 table ``reference`` (``OUT.diff.json``)."""
        table = table or f["pt"]
        outs = [f["scored"]] + ([f["scored"] + ".diff.json"] if reference else [])
        st = S.Stage(variant(f"score-{slug(name)}", precision),
                     [table, model] + ([reference] if reference else []), outs, None,
                     {} if unk_count else {"unk-count": False})

        def run():
            resume = st.resume and os.path.exists(f["scored"] + ".partial.json")
            if rescorer_cli.main(["score", "--phrase-table", table, "--model", model, "--out", f["scored"]]
                    + (["--unk-count"] if unk_count else []) + ["--overwrite"]
                    + (["--precision", precision] if precision != "fp32" else [])
                    + (["--resume"] if resume else []) + ([] if self.progress else ["-q"])) != 0:
                raise RuntimeError(f"rescorer score failed on {table}")
            if not reference:
                return None
            d = score_differences(reference, f["scored"])
            with atomic_write(outs[1], "w") as out:
                json.dump(d, out, indent=1)
            return {k: round(v, 4) for k, v in d.items() if isinstance(v, float)}
        st.run = run
        return st

    def _cslm_stage(self, vocab_dir: str, lm: str) -> S.Stage:
        c = self.cfg.section("cslm")
        texts = [self.cfg.p(t) for t in (c.get("text") or self.cfg.get("system", "lm-text", "")).split()]
        if not texts:
            raise ConfigError(f"{self.cfg.path}: [cslm] text = (the LM's training text) is not given")
        out = self.d["cslm"]
        opts = self._train_args("cslm", c, "cslm-train")

        st = S.Stage("cslm", texts + [os.path.join(vocab_dir, "target.vocab")],
                     [os.path.join(out, "summary.json"), os.path.join(out, "best.pt")], None, {"options": opts})

        def run():
            return self._train("cslm-train", ["--text", *texts, "--vocab", vocab_dir], out, opts, st.resume)
        st.run = run
        return st

    def system_ini(self, sysname: str, set_name: str, precision: str = "fp32") -> str:
        return os.path.join(self.d["systems"], slug(sysname), variant(f"moses.{slug(set_name)}", precision, ".") + ".ini")

    def _ini_stage(self, sysname: str, feats: frozenset, ini: MosesIni, set_name: str, f: dict, lm: str,
                   precision: str = "fp32", columns: int = 6) -> S.Stage:
        """moses.ini of a system for a set (its filtered tables); the start weights are Moses's
        defaults, 0.2 for a new table column, 0.5 for the CSLM (as the LM); a column the system
        does not use gets weight 0 and is not tuned.  A scored table has ``columns`` scores: the
        table's four, the RNN's, the WP feature's, and any further network's after them."""
        t = self.cfg.section("tuning")
        start_rnn, start_cslm = float(t.get("start-weight", 0.2)), self.cslm_start_weight
        out = self.system_ini(sysname, set_name, precision)

        def run():
            x = MosesIni.read(ini.path)
            x.set_feature_arg("LexicalReordering0", "path", f["rt"])
            x.set_feature_arg("LM0", "path", lm)
            if "rnn" in feats:
                x.set_table("TranslationModel0", f["scored"], columns, start_rnn)
                w = x.weights()["TranslationModel0"]
                if "wp" not in feats:
                    w[5] = 0.0
                x.set_weights({"TranslationModel0": w})
            else:
                x.set_feature_arg("TranslationModel0", "path", f["pt"])
            if "cslm" in feats and self.cslm_mode == "search":
                x.add_feature(f"CSLM name=CSLM0 path={os.path.join(self.d['cslm'], 'best.pt')}", [start_cslm])
            x.write(out)
            return None
        return S.Stage(variant(f"ini-{slug(sysname)}-{slug(set_name)}", precision),
                       [f["scored"] if "rnn" in feats else f["pt"], f["rt"], lm], [out], run,
                       dict({"features": sorted(feats), "cslm_mode": self.cslm_mode, "start": [start_rnn, start_cslm]},
                            **({"columns": columns} if columns != 6 else {})),
                       isolated=False)

    def standin_settings(self, uses_cslm: bool) -> dict:
        """The stand-in of the CSLM in the search, for the stage settings of a system that uses the
        CSLM by n-best rescoring (the other systems' stages do not depend on it)."""
        if uses_cslm and self.cslm_mode == "nbest":
            return {"cslm-standin": self.cslm_standin or "none"}
        return {}

    def tuned_path(self, sysname: str, k: int, bounds: str | None = None) -> str:
        """Run k's tuning result; with ``bounds`` other than the config's, the contrast run's."""
        d = self.d["tune"] if bounds in (None, self.bounds) else os.path.join(self.cfg.work, f"tune-bounds-{bounds}")
        return os.path.join(d, slug(sysname), f"run{k}.json")

    def _decoder(self, sysname: str, feats: frozenset, set_name: str, sentences: list[str], precision: str = "fp32"):
        """The decoder of a system on a set: the built-in decoder, wrapped by the CSLM's n-best
        rescoring in n-best mode; (decoder, feature groups, start weights)."""
        t = self.cfg.section("tuning")
        dcfg = DecoderConfig(stack_size=int(t.get("stack-size", 200)), pop_limit=int(t.get("pop-limit", 1000)))
        dec = BuiltinDecoder(self.system_ini(sysname, set_name, precision), sentences, dcfg, self.cfg.processes,
                             progress=self.progress)
        groups, w0 = list(dec.layout.groups), dec.model.weights.copy()
        if "cslm" in feats and self.cslm_mode == "nbest":
            from rescorer.cslm import CSLMScorer  # torch: only in the stages that use it
            scorer = CSLMScorer.load(self.cslm_model())
            dec = RescoredDecoder(dec, "CSLM0", scorer.score_sentences, standin=self.cslm_standin)
            groups = dec.groups
            w0 = dec.start_weights(w0, self.cslm_start_share, self.cslm_start_weight)
        return dec, groups, w0

    def cslm_model(self) -> str:
        """The CSLM the systems with it decode with."""
        return os.path.join(self.d["cslm"], "best.pt")

    def tune_stage_name(self, sysname: str, k: int, bounds: str | None = None) -> str:
        return f"tune-{slug(sysname)}-{k}" + (f"-{bounds}-bounds" if bounds and bounds != self.bounds else "")

    def test_stage_name(self, set_name: str, sysname: str, precision: str = "fp32") -> str:
        return variant(f"test-{slug(set_name)}-{slug(sysname)}", precision)

    def _tune_stage(self, sysname: str, feats: frozenset, k: int, bounds: str | None = None) -> S.Stage:
        """MERT run k of a system on the dev set; with ``bounds``, a contrast run with those bounds
        instead of the config's (same seed and start, so that only the bounds differ)."""
        t = self.cfg.section("tuning")
        settings = {k2: t.get(k2) for k2 in ("nbest", "max-iter", "restarts", "bounds", "stack-size", "pop-limit")}
        contrast = bounds is not None and bounds != self.bounds
        bounds = bounds or self.bounds
        if contrast:
            settings["bounds"] = bounds
        start = t.get("start", "perturbed")
        if start not in ("perturbed", "defaults"):
            raise ConfigError(f"{self.cfg.path}: [tuning] start = {start!r}: expected perturbed or defaults")
        settings["start"] = start
        standin = self.standin_settings("cslm" in feats)
        settings.update(standin)
        if standin:  # n-best mode: the start of CSLM0 (search mode: in the ini)
            settings["cslm-start"] = (f"share {self.cslm_start_share}" if self.cslm_standin
                                      else self.cslm_start_weight)
        normalize = t.get("normalize", "none").strip()
        if normalize not in ("none", "l1"):
            raise ConfigError(f"{self.cfg.path}: [tuning] normalize = {normalize!r}: expected none or l1")
        if normalize != "none":  # recorded only when set: stages tuned before the option existed stay done
            settings["normalize"] = normalize
        seed = self.seed * 1000 + k
        out = self.tuned_path(sysname, k, bounds)
        files = self.set_files("dev", self.cfg.dev, "", "")
        ins = [self.system_ini(sysname, "dev")] + ([os.path.join(self.d["cslm"], "best.pt")] if "cslm" in feats else [])

        st = S.Stage(self.tune_stage_name(sysname, k, bounds), ins, [out], None, dict(settings, seed=seed))

        def run():
            src = read_lines(files["source"])
            refs = [r.split() for r in read_lines(self.cfg.dev["reference"], self.cfg.dev["lines"])]
            if len(refs) != len(src):
                raise ValueError(f"{self.cfg.dev['reference']}: {len(refs)} references for {len(src)} sentences")
            dec, groups, w0 = self._decoder(sysname, feats, "dev", src)
            tunable = tunable_mask(groups)
            if "rnn" in feats and "wp" not in feats:  # the WP column is there, with weight 0, untuned
                a = sum(n for name, n, _ in groups[:[g[0] for g in groups].index("TranslationModel0")])
                tunable[a + 5] = False
            if start == "perturbed":
                w0 = perturbed_start(w0, tunable, seed)
            if bounds == "positive":
                lower, upper = default_ranges(groups)
            else:  # Moses's mert: no bounds unless --positive is given
                lower, upper = np.full(len(w0), -math.inf), np.full(len(w0), math.inf)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            state = out[:-5] + ".mert.npz"
            res = tune(dec.nbest_lists, refs, w0, tunable, nbest=int(t.get("nbest", 100)),
                       max_iter=int(t.get("max-iter", 25)), restarts=int(t.get("restarts", 20)), seed=seed,
                       lower=lower, upper=upper, processes=self.cfg.processes, state=state,
                       resume=st.resume and os.path.exists(state), normalize=normalize == "l1")
            weights = {name: [float(v) for v in res.weights[sl]] for name, sl in FeatureLayout(groups).slices().items()}
            best = max(res.history, key=lambda h: h["dev_bleu"])
            with atomic_write(out, "w") as f:
                json.dump({"system": sysname, "run": k, "seed": seed, "weights": weights,
                           "start": start, "start_weights": [float(v) for v in w0],
                           "dev_bleu": best["dev_bleu"], "iterations": len(res.history),
                           "bounds": bounds, "history": res.history}, f, indent=1)
            return {"dev_bleu": round(best["dev_bleu"], 2), "iterations": len(res.history)}
        st.run = run
        return st

    def release_paths(self) -> dict:
        """Where the release goes, in the report's directory: the networks, their vocabularies, and
        each system's tuned moses.ini per run."""
        rel = self.cfg.report
        return {"models": os.path.join(rel, "models"), "moses": os.path.join(rel, "moses")}

    def released_ini(self, sysname: str, k: int) -> str:
        return os.path.join(self.release_paths()["moses"], slug(sysname), f"run{k}.ini")

    def _release_stage(self, vocab_dir: str | None, rnn: str | None, cslm: bool) -> S.Stage:
        """What a test set added elsewhere needs without retraining or retuning: the RNN and the
        CSLM with their weights in fp16 and no trainer state (``export_checkpoint``), the
        shortlists, and every run's tuned moses.ini.  The inis name their files by base name
        (``phrase-table.rnn.gz``: the set's table filtered and scored with ``models/rnn.pt``),
        to be pointed at a set's own files with ``rescorer ini set-table`` or by hand."""
        paths = self.release_paths()
        nets = ([("rnn", rnn)] if rnn else []) + ([("cslm", os.path.join(self.d["cslm"], "best.pt"))] if cslm else [])
        vocabs = [os.path.join(vocab_dir, f"{side}.vocab") for side in ("source", "target")] if vocab_dir else []
        runs = [(n, k) for n in self.cfg.systems for k in range(1, self.runs + 1)]
        tuned = [self.tuned_path(n, k) for n, k in runs]
        inis = [self.system_ini(n, "dev") for n in self.cfg.systems]
        outs = ([os.path.join(paths["models"], f"{name}.pt") for name, _ in nets]
                + [os.path.join(paths["models"], os.path.basename(v)) for v in vocabs]
                + [self.released_ini(n, k) for n, k in runs])
        standin = self.standin_settings(cslm)
        st = S.Stage("release", [p for _, p in nets] + vocabs + inis + tuned, outs, None,
                     dict({"dtype": "float16", "cslm_mode": self.cslm_mode}, **standin,
                          # the inis' notes give the 'rescorer decode --cslm' line
                          **({"ini-notes": "decode --cslm"} if standin and self.cslm_standin else {})),
                     compare={p: tuned_weights for p in tuned},
                     isolated=False)

        def run():
            from rescorer.checkpoint import export_checkpoint  # torch: only in this stage's process
            info = {}
            os.makedirs(paths["models"], exist_ok=True)
            for name, src in nets:
                x = export_checkpoint(src, os.path.join(paths["models"], f"{name}.pt"))
                info[f"{name}_mb"] = x["size_mb"]
            for v in vocabs:
                with open(v, "rb") as f, atomic_write(os.path.join(paths["models"], os.path.basename(v)), "wb") as g:
                    shutil.copyfileobj(f, g)
            n_dev = len(read_lines(self.set_files("dev", self.cfg.dev, "", "")["source"]))
            for n, k in runs:
                feats = self.cfg.systems[n]
                with open(self.tuned_path(n, k)) as f:
                    t = json.load(f)
                x = MosesIni.read(self.system_ini(n, "dev"))
                x.set_weights({g: w for g, w in t["weights"].items() if g in x.weights()})
                for feature, key in (("TranslationModel0", "path"), ("LexicalReordering0", "path"), ("LM0", "path")):
                    x.set_feature_arg(feature, key, os.path.basename(x.feature(feature).get(key)))
                if "CSLM0" in x.weights():
                    x.set_feature_arg("CSLM0", "path", "cslm.pt")
                roles = {role: os.path.basename(x.feature(feature).get("path")) for role, feature in ROLES.items()
                         if feature in {f.name for f in x.features()}}
                if "cslm" in feats and self.cslm_mode == "nbest":
                    roles["cslm"] = "cslm.pt"
                head = [f"# {n}, MERT run {k} (seed {t['seed']}, bounds: {t['bounds']}): dev BLEU {t['dev_bleu']:.2f} "
                        f"(MERT's, tokenised) on {n_dev} sentences.",
                        "# Files by base name: point them at a test set's tables and the LM (rescorer ini set-table "
                        "for the phrase table).",
                        "# Files by role: " + " ".join(f"{role}={name}" for role, name in roles.items())]
                if "rnn" in feats:
                    head.append("# phrase-table.rnn.gz: the filtered table scored by `rescorer score --model rnn.pt "
                                "--unk-count` (columns 5 and 6: the RNN and the WP feature).")
                if "cslm" in feats and self.cslm_mode == "nbest":
                    head.append(f"# CSLM0= {format_weight(t['weights']['CSLM0'][0])}: the CSLM re-ranks the "
                                f"{self.cfg.get('cslm', 'nbest', '100')}-best list with these weights; it is "
                                "not a feature of the search (rescorer cslm-rescore --model cslm.pt, then "
                                f"rescorer rerank --ini run{k}.ini --weights 'CSLM0= "
                                f"{format_weight(t['weights']['CSLM0'][0])}').")
                    if self.cslm_standin:
                        sw = t["weights"][self.cslm_standin][0] + t["weights"]["CSLM0"][0]
                        head.append(f"# The n-best list comes from a search with {self.cslm_standin}= {format_weight(sw)} "
                                    f"(its weight plus CSLM0's, {self.cslm_standin} standing in for the CSLM): "
                                    f"-weight-overwrite '{self.cslm_standin}= {format_weight(sw)}' for Moses.")
                        head.append(f"# All of it with the built-in decoder: rescorer decode --ini run{k}.ini --cslm "
                                    f"cslm.pt --cslm-weight {format_weight(t['weights']['CSLM0'][0])} --cslm-nbest "
                                    f"{self.cfg.get('cslm', 'nbest', '100')} --cslm-standin {self.cslm_standin} "
                                    "--input IN --output OUT")
                os.makedirs(os.path.dirname(self.released_ini(n, k)), exist_ok=True)
                with atomic_write(self.released_ini(n, k), "w") as f:
                    f.write("\n".join(head) + "\n" + x.text())
            return info
        st.run = run
        return st

    def correlation_path(self) -> str:
        return os.path.join(self.d["sets"], "dev", "rnn-vs-table.json")

    def _correlation_stage(self, f: dict, out: str | None = None, columns: int = 6) -> S.Stage:
        """How the RNN score relates to the table's own scores on the dev set's scored table
        ``f["scored"]`` (``table_correlations``, written to ``out``): does it bring the decoder
        something the counts do not?  ``columns``: the scores per line of that table."""
        out = out or self.correlation_path()
        st = S.Stage("rnn-vs-table-dev", [f["scored"]], [out], None)

        def run():
            src, tgt, scores = read_columns(f["scored"], source_spans(read_lines(f["source"])), columns,
                                            self.progress)
            c = table_correlations(src, scores)
            with atomic_write(out, "w") as fh:
                json.dump(c, fh, indent=1)
            return {"pairs": c["pairs"], "spearman_direct": round(c["columns"]["p(target|source)"]["spearman"], 3)}
        st.run = run
        return st

    def cslm_modes_system(self) -> str | None:
        """The system whose first tuning run decodes the dev set with the CSLM both ways: the one
        with the fewest features that has the CSLM (+CSLM alone where there is one)."""
        with_cslm = [n for n, f in self.cfg.systems.items() if "cslm" in f]
        return min(with_cslm, key=lambda n: len(self.cfg.systems[n])) if with_cslm else None

    def modes_path(self) -> str:
        return os.path.join(self.d["tune"], "cslm-modes.json")

    def _modes_stage(self, sysname: str, feats: frozenset) -> S.Stage:
        """The CSLM by n-best rescoring and as a feature of the search, on the dev set with the
        weights of the system's first tuning run: dev BLEU (MERT's) and decoding time of each."""
        files = self.set_files("dev", self.cfg.dev, "", "")
        tuned, cslm = self.tuned_path(sysname, 1), os.path.join(self.d["cslm"], "best.pt")
        n_rescore = int(self.cfg.get("cslm", "nbest", "100"))
        out = self.modes_path()
        st = S.Stage("cslm-modes-dev", [files["source"], self.system_ini(sysname, "dev"), cslm, tuned], [out], None,
                     dict({"system": sysname, "nbest": n_rescore}, **self.standin_settings("cslm" in feats)),
                     compare={tuned: tuned_weights})

        def run():
            from rescorer.cslm import CSLMScorer  # torch: only in the stages that use it
            src = read_lines(files["source"])
            refs = [Reference(r.split()) for r in read_lines(self.cfg.dev["reference"], self.cfg.dev["lines"])]
            with open(tuned) as f:
                weights = json.load(f)["weights"]
            t = self.cfg.section("tuning")
            dcfg = DecoderConfig(stack_size=int(t.get("stack-size", 200)), pop_limit=int(t.get("pop-limit", 1000)))
            res = {"system": sysname, "run": 1, "sentences": len(src), "nbest_size": n_rescore}
            for mode in ("nbest", "search"):
                x = MosesIni.read(self.system_ini(sysname, "dev"))
                if "CSLM0" in {f.name for f in x.features()}:
                    x.remove_feature("CSLM0")
                if mode == "search":
                    x.add_feature(f"CSLM name=CSLM0 path={cslm}", weights["CSLM0"])
                ini = out[:-len(".json")] + f".{mode}.ini"
                x.write(ini)
                t0 = time.time()
                dec = BuiltinDecoder(ini, src, dcfg, self.cfg.processes, progress=self.progress)
                if mode == "nbest":
                    scorer = CSLMScorer.load(cslm)
                    dec = RescoredDecoder(dec, "CSLM0", scorer.score_sentences, standin=self.cslm_standin)
                groups = dec.groups if mode == "nbest" else dec.layout.groups
                w = np.concatenate([weights[name] for name, _, _ in groups])
                t1 = time.time()
                lists = dec.nbest_lists(w, n_rescore) if mode == "nbest" else \
                    [[(ts[0].words, None)] for ts in dec.translate(w, 1)]
                res[mode] = {"dev_bleu": one_best_bleu(lists, refs), "load_seconds": round(t1 - t0, 1),
                             "decode_seconds": round(time.time() - t1, 1)}
            with atomic_write(out, "w") as f:
                json.dump(res, f, indent=1)
            return {m: round(res[m]["dev_bleu"], 2) for m in ("nbest", "search")}
        st.run = run
        return st

    def output_path(self, set_name: str, sysname: str, k: int, precision: str = "fp32") -> str:
        return os.path.join(self.d["test"], slug(set_name), variant(slug(sysname), precision), f"run{k}.out")

    def _test_stage(self, set_name: str, s: dict, sysname: str, feats: frozenset, precision: str = "fp32") -> S.Stage:
        """Every tuning run's weights decode the test set (a reduced-precision table: with the
        weights tuned on the fp32 one)."""
        files = self.set_files(set_name, s, "", "")
        outs = [self.output_path(set_name, sysname, k, precision) for k in range(1, self.runs + 1)]
        tuned = [self.tuned_path(sysname, k) for k in range(1, self.runs + 1)]
        n_rescore = int(self.cfg.get("cslm", "nbest", "100"))

        st = S.Stage(self.test_stage_name(set_name, sysname, precision),
                     [files["source"], self.system_ini(sysname, set_name, precision)] + tuned, outs, None,
                     dict({"rescore_nbest": n_rescore, "cslm_mode": self.cslm_mode},
                          **self.standin_settings("cslm" in feats)),
                     compare={p: tuned_weights for p in tuned})

        def run():
            src = read_lines(files["source"])
            dec, groups, _ = self._decoder(sysname, feats, set_name, src, precision)
            for path, out in zip(tuned, outs):
                if st.resume and os.path.exists(out):
                    continue  # decoded before the interruption (each output is written atomically)
                with open(path) as f:
                    weights = json.load(f)["weights"]
                w = np.concatenate([weights[name] for name, _, _ in groups])
                if isinstance(dec, RescoredDecoder):
                    best = [cands[0][0] for cands in dec.nbest_lists(w, n_rescore)]
                else:
                    best = [ts[0].words for ts in dec.translate(w, 1)]
                P.write_lines(out, (" ".join(words) for words in best))
            return {"sentences": len(src), "runs": len(outs)}
        st.run = run
        return st

    # -- running -----------------------------------------------------------------------------
    def run(self, force: bool = False) -> list[dict]:
        cfg = self.cfg
        records = []
        if cfg.build:
            t = time.time()
            build = cfg.build if os.path.isabs(cfg.build) else os.path.join(ROOT, cfg.build)  # as experiments/ names it
            rep = build_baseline.main(["--config", build, "--work", os.path.join(cfg.work, "build"),
                                       "--data", cfg.data])
            records.append({"stage": "build", "seconds": round(time.time() - t, 1),
                            "skipped": all(r.get("skipped") for r in rep),
                            "peak_memory_mb": max(r.get("peak_memory_mb", 0) for r in rep)})
        records += self.run_stages(force)
        with atomic_write(os.path.join(cfg.work, "stages.json"), "w") as f:
            json.dump(records, f, indent=1)
        return records

    def stage_args(self) -> list[str]:
        """The options of this script by which a stage runs in a process of its own."""
        cfg = self.cfg
        return ["--config", cfg.path, "--data", cfg.data, "--work", cfg.work, "--report", cfg.report] + (
            [] if self.progress else ["-q"])

    def run_stages(self, force: bool = False) -> list[dict]:
        return S.run_stages(self.stages(), self.cfg.work, force, isolate=S.stage_command(__file__, self.stage_args()))


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
            from experiments.release import ReleaseExperiment  # it builds on this module
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
