"""Translate new test sets with a committed Table 1 release alone: no work directory of the run
that made it, no retraining, no retuning.

    python experiments/reproduce.py --config experiments/table1.ini --release experiments/results/table1 \\
        --add-test NAME SRC.tc REF [PT RT] [--lm LM]

The release (``reproduce.py``'s ``release`` stage) holds the networks (``models/``) and every
system's tuned moses.ini per MERT run (``moses/SYSTEM/runK.ini``), whose header names the files
they need by role (phrase table, reordering table, LM, CSLM) and, for the systems that use the
CSLM by n-best rescoring, CSLM0's tuned weight and the feature standing in for it in the search.
Stages, cached in their own work directory and resumable like the rest:

  lm                 the LM, when neither --lm nor the system's ini gives one (from [system] lm-text)
  filter-SET         PT and RT (else the system's tables) filtered to the test set's source
  score-SET          the filtered table scored by the released RNN (+ the WP column); with both
                     directions, score-SET-inverse then adds the inverse network's column
  weights-SYSTEM-K   run K's tuned weights, read from its released ini
  ini-SYSTEM-SET     every run's ini with its files pointed at the set's (SYSTEM/SET/runK.ini)
  test-SET-SYSTEM    every run's weights decode the set (the CSLM systems by n-best rescoring)

then the Table 1 report of those test sets.
"""
from __future__ import annotations

import json
import os
import re

from moses_integration import stages as S
from moses_integration.moses_ini import MosesIni
from rescorer.fileio import atomic_write

from experiments.common import ConfigError
from experiments.table1_experiment import Experiment
from experiments.table1_config import ROLES, slug

_HEAD = re.compile(r"# (?P<system>.+), MERT run (?P<run>\d+) \(seed (?P<seed>\d+), bounds: (?P<bounds>\w+)\): "
                   r"dev BLEU (?P<bleu>[-\d.]+)")
_CSLM = re.compile(r"# CSLM0= (?P<w>[-+\d.eE]+):")
_STANDIN = re.compile(r"search with (?P<name>\S+)= [-+\d.eE]+ \(its weight plus CSLM0's")
_ROLES = re.compile(r"# Files by role: (?P<roles>.*)")


def read_released_run(path: str) -> dict:
    """What a released moses.ini says besides its features: the system, run, seed, bounds and dev
    BLEU of its MERT run, the files it needs by role, CSLM0's weight and the search's stand-in for
    the CSLM (n-best mode), and its weights."""
    head = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("# ") or line.startswith("# MOSES") or line.startswith("#####"):
                break
            head.append(line.rstrip("\n"))
    m = _HEAD.match(head[0]) if head else None
    if m is None:
        raise ConfigError(f"{path}:1: not a released moses.ini (its first line should read '# SYSTEM, MERT run K "
                          "(seed S, bounds: B): dev BLEU X ...', as reproduce.py's release stage writes it)")
    ini = MosesIni.read(path)
    names = {f.name for f in ini.features()}
    roles = {}
    for line in head:
        r = _ROLES.match(line)
        if r:
            roles = dict(x.split("=", 1) for x in r["roles"].split())
    if not roles:  # a release made before the roles were written: the features' paths say them
        roles = {role: os.path.basename(ini.feature(feat).get("path")) for role, feat in ROLES.items() if feat in names}
    cslm = next((float(c["w"]) for c in map(_CSLM.match, head) if c), None)
    if cslm is not None:
        roles.setdefault("cslm", "cslm.pt")
    standin = next((s["name"] for s in map(_STANDIN.search, head) if s), None)
    return {"system": m["system"], "run": int(m["run"]), "seed": int(m["seed"]), "bounds": m["bounds"],
            "dev_bleu": float(m["bleu"]), "roles": roles, "cslm_weight": cslm, "standin": standin,
            "weights": ini.weights(), "scored": roles.get("phrase-table", "").endswith(".rnn.gz")}


class ReleaseExperiment(Experiment):
    """The test sets of a work directory of their own, decoded with a release's networks and
    tuned weights (``cfg.tests``: the sets added with --add-test only)."""

    def __init__(self, cfg, release: str, lm: str | None = None, progress: bool = True):
        cfg.tests = {}  # the config's own test sets are the release's report; these are new ones
        super().__init__(cfg, progress)
        self.release = os.path.abspath(release)
        self.given_lm = os.path.abspath(lm) if lm else None
        self.runs_read = self._read_release()

    def _read_release(self) -> dict[tuple[str, int], dict]:
        """Every system's every run, checked: the ini exists, is the system's, and the files it
        needs by role that the release holds (the networks) are there."""
        out = {}
        for sysname, feats in self.cfg.systems.items():
            for k in range(1, self.runs + 1):
                path = self.released_ini(sysname, k)
                if not os.path.exists(path):
                    raise ConfigError(f"--release {self.release}: no {os.path.relpath(path, self.release)} (system "
                                      f"{sysname}, run {k} of [tuning] runs = {self.runs} in {self.cfg.path})")
                r = read_released_run(path)
                if r["system"] != sysname:
                    raise ConfigError(f"{path}:1: the ini of system {r['system']!r}, where {sysname!r} is expected")
                needed = ([os.path.basename(m) for _, m in self.rnn_models()] if r["scored"] else []) + ([r["roles"]["cslm"]] if "cslm" in r["roles"] else [])
                for name in needed:
                    role = "cslm" if name == r["roles"].get("cslm") else "phrase-table (scored by the RNN)"
                    if not os.path.exists(os.path.join(self.release_paths()["models"], name)):
                        raise ConfigError(f"{path}: the {role} needs models/{name}, which the release "
                                          f"{self.release} does not have")
                nbest = r["cslm_weight"] is not None and "CSLM0" not in r["weights"]
                if "cslm" in feats and nbest != (self.cslm_mode == "nbest"):
                    raise ConfigError(f"{path}: the release uses the CSLM {'by n-best rescoring' if nbest else 'in the search'}"
                                      f", {self.cfg.path} [cslm] mode = {self.cslm_mode}")
                if nbest and r["standin"] != self.cslm_standin:
                    raise ConfigError(f"{path}: the release searches with {r['standin'] or 'no feature'} standing in "
                                      f"for the CSLM, {self.cfg.path} [cslm] search-standin = "
                                      f"{self.cslm_standin or 'none'}")
                if ("cslm" in feats) != ("cslm" in r["roles"]) or ("rnn" in feats) != r["scored"]:
                    raise ConfigError(f"{path}: its files by role ({', '.join(r['roles'])}) do not fit system "
                                      f"{sysname}'s features ({', '.join(sorted(feats)) or 'none'})")
                out[sysname, k] = r
        return out

    def run(self, force: bool = False) -> list[dict]:
        records = self.run_stages(force)  # nothing to build: the release and the given files are the system
        with atomic_write(os.path.join(self.cfg.work, "stages.json"), "w") as f:
            json.dump(records, f, indent=1)
        return records

    def stage_args(self) -> list[str]:
        return super().stage_args() + ["--release", self.release] + (["--lm", self.given_lm] if self.given_lm else [])

    def release_paths(self) -> dict:
        return {"models": os.path.join(self.release, "models"), "moses": os.path.join(self.release, "moses")}

    def released_ini(self, sysname: str, k: int) -> str:
        return os.path.join(self.release, "moses", slug(sysname), f"run{k}.ini")

    def cslm_model(self) -> str:
        return os.path.join(self.release_paths()["models"], "cslm.pt")

    def rnn_models(self) -> list[tuple[str, str]]:
        return [(name, os.path.join(self.release_paths()["models"], f"{name}.pt"))
                for name, _ in super().rnn_models()]

    def tune_stage_name(self, sysname: str, k: int, bounds: str | None = None) -> str:
        return f"weights-{slug(sysname)}-{k}"

    def contrast(self):
        return None  # the contrast runs are the release's dev-set story, not a test set's

    def precision_check(self):
        return None

    def cslm_modes_system(self):
        return None

    def run_ini(self, sysname: str, set_name: str, k: int) -> str:
        return os.path.join(self.d["systems"], slug(sysname), slug(set_name), f"run{k}.ini")

    def system_ini(self, sysname: str, set_name: str, precision: str = "fp32") -> str:
        return self.run_ini(sysname, set_name, 1)

    # -- the system's files --------------------------------------------------------------------
    def tables_and_lm(self) -> tuple[str | None, str | None, str, list[S.Stage]]:
        """The system's phrase and reordering tables (None without a system ini), the LM (--lm,
        else the system's, else built from [system] lm-text) and the stages that make it."""
        cfg = self.cfg
        ini_path = (os.path.join(cfg.work, "build", "model", "moses.ini") if cfg.build
                    else cfg.p(cfg.get("system", "ini", "")) if cfg.get("system", "ini", "").strip() else "")
        if ini_path and os.path.exists(ini_path):
            _, pt, rt, lm, stages = self.system()
            if self.given_lm:
                lm, stages = self.given_lm, []
            return pt, rt, lm, stages
        if not self.given_lm:
            raise ConfigError(f"{cfg.path}: no system ini ({ini_path or '[system] ini ='}) to take the LM from: "
                              "give --lm")
        return None, None, self.given_lm, []

    # -- stages ------------------------------------------------------------------------------
    def stages(self) -> list[S.Stage]:
        if not self.cfg.tests:
            raise ConfigError("--release: no test set to translate: give --add-test NAME SRC REF [PT RT]")
        pt, rt, lm, stages = self.tables_and_lm()
        self.lm_path = lm
        if not os.path.exists(lm) and not stages:
            raise ConfigError(f"the LM {lm} (role lm of the released inis) does not exist")
        need_rnn = any(r["scored"] for r in self.runs_read.values())
        for name, s in self.cfg.tests.items():
            own_pt, own_rt = s.get("phrase-table") or pt, s.get("reordering-table") or rt
            if not own_pt:
                raise ConfigError(f"--add-test {name}: give its PT RT (the config names no system whose tables "
                                  "could be filtered)")
            for role, p in (("phrase-table", own_pt), ("reordering-table", own_rt)):
                if not os.path.exists(p):
                    raise ConfigError(f"--add-test {name}: the {role} {p} does not exist")
            s = dict(s, **{"phrase-table": None, "reordering-table": None})  # filtered here, whatever they are
            f = self.set_files(name, s, own_pt, own_rt)
            stages.append(self.filter_stage(name, s, f, own_pt, own_rt))
            if need_rnn:
                stages += self.rnn_score_stages(name, f)
            for sysname, feats in self.cfg.systems.items():
                stages.append(self._run_ini_stage(sysname, feats, name, f, lm))
        for (sysname, k) in self.runs_read:
            stages.append(self._weights_stage(sysname, k))
        for name, s in self.cfg.tests.items():
            for sysname, feats in self.cfg.systems.items():
                stages.append(self.test_stage(name, s, sysname, feats))
        return stages

    def _weights_stage(self, sysname: str, k: int) -> S.Stage:
        """Run k's tuned weights as a tuning result (what the test stage and the report read)."""
        src, out = self.released_ini(sysname, k), self.tuned_path(sysname, k)

        def run():
            r = read_released_run(src)
            weights = dict(r["weights"])
            if r["cslm_weight"] is not None and "CSLM0" not in weights:  # n-best mode: not in the ini
                weights["CSLM0"] = [r["cslm_weight"]]
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with atomic_write(out, "w") as f:
                json.dump({"system": sysname, "run": k, "seed": r["seed"], "weights": weights, "start": "released",
                           "dev_bleu": r["dev_bleu"], "iterations": None, "bounds": r["bounds"], "history": [],
                           "released": src}, f, indent=1)
            return None
        return S.Stage(self.tune_stage_name(sysname, k), [src], [out], run, isolated=False)

    def _run_ini_stage(self, sysname: str, feats: frozenset, set_name: str, f: dict, lm: str) -> S.Stage:
        """Every released run's ini with the files it needs by role pointed at the set's."""
        outs = [self.run_ini(sysname, set_name, k) for k in range(1, self.runs + 1)]
        srcs = [self.released_ini(sysname, k) for k in range(1, self.runs + 1)]
        table = f["scored"] if "rnn" in feats else f["pt"]

        def run():
            for src, out in zip(srcs, outs):
                x = MosesIni.read(src)
                names = {g.name for g in x.features()}
                for role, path in (("phrase-table", table), ("reordering-table", f["rt"]), ("lm", lm),
                                   ("cslm", self.cslm_model())):
                    if ROLES[role] in names:
                        x.set_feature_arg(ROLES[role], "path", path)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                x.write(out)
            return None
        return S.Stage(f"ini-{slug(sysname)}-{slug(set_name)}", srcs + [table, f["rt"], lm], outs, run,
                       {"features": sorted(feats)}, isolated=False)
