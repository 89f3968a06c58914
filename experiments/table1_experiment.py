"""The Table 1 experiment on one config: its settings, paths and stages in the order they run;
each kind of stage is in its own module (``table1_sets``, ``table1_networks``, ``table1_tuning``,
``table1_release``).  ``reproduce.py`` is its command line; ``release.py`` and ``rnn_gain.py``
build on it."""
from __future__ import annotations

import json
import os

from moses_integration import stages as S
from rescorer.fileio import atomic_write

from experiments import build_baseline
from experiments.common import ROOT, ConfigError, vocab_stage
from experiments.table1_config import Config
from experiments.table1_networks import NetworkStages
from experiments.table1_release import ReleaseStage
from experiments.table1_sets import SetStages
from experiments.table1_tuning import TuningStages


class Experiment(SetStages, NetworkStages, TuningStages, ReleaseStage):
    """The Table 1 experiment on one config: its settings here, its stages in the order they run
    (``stages``), each kind of stage in its module (``table1_sets``, ``table1_networks``,
    ``table1_tuning``, ``table1_release``)."""

    def __init__(self, cfg: Config, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        W = cfg.work
        self.d = {k: os.path.join(W, k) for k in ("lm", "rnn", "rnn-inverse", "cslm", "sets", "systems", "tune", "test")}
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

    def stages(self) -> list[S.Stage]:
        cfg = self.cfg
        ini, pt, rt, lm, stages = self.system()
        self.lm_path = lm
        sets = self.sets()
        files = {n: self.set_files(n, s, pt, rt) for n, s in sets.items()}
        for name, s in sets.items():
            stages.append(self.filter_stage(name, s, files[name], pt, rt))
        need_rnn = any("rnn" in f for f in cfg.systems.values())
        need_cslm = any("cslm" in f for f in cfg.systems.values())
        r = cfg.section("rnn")
        vocab_dir = os.path.join(self.d["rnn"], "vocab")
        rnn_table = cfg.p(r["table"]) if r.get("table", "").strip() else pt
        if need_rnn or need_cslm:
            stages.append(vocab_stage(rnn_table, vocab_dir, int(r.get("shortlist", 15000))))
        if need_rnn:
            for name, run_dir in self.rnn_runs():
                stages.append(self.rnn_stage(rnn_table, vocab_dir, run_dir, r, inverse=name == "rnn-inverse"))
            for name in sets:
                stages += self.rnn_score_stages(name, files[name])
            stages.append(self.correlation_stage(files["dev"], columns=self.rnn_columns()))
        for sysname, feats in cfg.systems.items():
            for name in sets:
                stages.append(self.ini_stage(sysname, feats, ini, name, files[name], lm, columns=self.rnn_columns()))
        # the systems without the CSLM are tuned and tested before the CSLM is trained, so that
        # Baseline against +RNN, what the experiment is first about, comes hours earlier
        for with_cslm in (False, True):
            group = {n: f for n, f in cfg.systems.items() if ("cslm" in f) == with_cslm}
            if with_cslm and need_cslm:
                stages.append(self.cslm_stage(vocab_dir, lm))
            for sysname, feats in group.items():
                for k in range(1, self.runs + 1):
                    stages.append(self.tune_stage(sysname, feats, k))
            for name, s in sets.items():
                if s["kind"] == "test":
                    for sysname, feats in group.items():
                        stages.append(self.test_stage(name, s, sysname, feats))
            check = self.precision_check()
            if check and not with_cslm:
                precision, sysname = check
                feats = cfg.systems[sysname]
                for name, s in sets.items():
                    if s["kind"] == "test":
                        f = dict(files[name], scored=self.scored_path(files[name], precision))
                        stages += self.rnn_score_stages(name, files[name], precision, reference=files[name])
                        stages.append(self.ini_stage(sysname, feats, ini, name, f, lm, precision,
                                                     columns=self.rnn_columns()))
                        stages.append(self.test_stage(name, s, sysname, feats, precision))
        stages.append(self.release_stage(vocab_dir if need_rnn or need_cslm else None, need_rnn, need_cslm))
        modes = self.cslm_modes_system()
        if modes:
            stages.append(self.modes_stage(modes, cfg.systems[modes]))
        contrast = self.contrast()
        if contrast:
            bounds, names, runs = contrast
            for sysname in names:
                for k in range(1, runs + 1):
                    stages.append(self.tune_stage(sysname, cfg.systems[sysname], k, bounds))
        return stages

    def run(self, force: bool = False) -> list[dict]:
        cfg = self.cfg
        records = []
        if cfg.build:
            records.append({"stage": "build", **build_baseline.build(cfg.build, os.path.join(cfg.work, "build"), cfg.data,
                                                                     progress=self.progress)})
        if cfg.whole.config:  # the whole table the networks may learn from ([rnn] table = {whole}/...)
            records.append(cfg.whole.run(cfg.data, self.progress))
        records += self.run_stages(force)
        with atomic_write(os.path.join(cfg.work, "stages.json"), "w") as f:
            json.dump(records, f, indent=1)
        return records

    # the command a stage runs in, in a process of its own (it answers --run-stage)
    COMMAND = os.path.join(ROOT, "experiments", "reproduce.py")

    def stage_args(self) -> list[str]:
        """The options of the command by which a stage runs in a process of its own."""
        cfg = self.cfg
        return ["--config", cfg.path, "--data", cfg.data, "--work", cfg.work, "--report", cfg.report] + (
            [] if self.progress else ["-q"])

    def run_stages(self, force: bool = False) -> list[dict]:
        return S.run_stages(self.stages(), self.cfg.work, force, isolate=S.stage_command(self.COMMAND, self.stage_args()))
