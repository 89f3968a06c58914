"""The Table 1 experiment's tuning and testing: a system's decoder (the CSLM by n-best rescoring
or in the search), its MERT runs (``tune-SYSTEM-K``, contrast runs with other bounds), every
run's weights decoding each test set (``test-SET-SYSTEM``) and the CSLM's two modes compared
on the dev set (``cslm-modes-dev``).  A part of ``table1_experiment.Experiment``."""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from moses_integration import pipeline as P
from moses_integration import stages as S
from moses_integration.bleu import Reference
from moses_integration.decoder import DecoderConfig, FeatureLayout
from moses_integration.mert import default_ranges, one_best_bleu, tunable_mask, tune
from moses_integration.moses_ini import MosesIni
from moses_integration.runner import BuiltinDecoder, RescoredDecoder
from rescorer.fileio import atomic_write

from experiments.common import ConfigError, read_lines
from experiments.table1_config import slug, variant
from experiments.table1_stats import perturbed_start, tuned_weights


class TuningStages:
    """MERT runs, test decodes and the CSLM modes' comparison."""

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

    def decoder(self, sysname: str, feats: frozenset, set_name: str, sentences: list[str], precision: str = "fp32"):
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

    def tune_stage_name(self, sysname: str, k: int, bounds: str | None = None) -> str:
        return f"tune-{slug(sysname)}-{k}" + (f"-{bounds}-bounds" if bounds and bounds != self.bounds else "")

    def test_stage_name(self, set_name: str, sysname: str, precision: str = "fp32") -> str:
        return variant(f"test-{slug(set_name)}-{slug(sysname)}", precision)

    def tune_stage(self, sysname: str, feats: frozenset, k: int, bounds: str | None = None) -> S.Stage:
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
            dec, groups, w0 = self.decoder(sysname, feats, "dev", src)
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

    def output_path(self, set_name: str, sysname: str, k: int, precision: str = "fp32") -> str:
        return os.path.join(self.d["test"], slug(set_name), variant(slug(sysname), precision), f"run{k}.out")

    def test_stage(self, set_name: str, s: dict, sysname: str, feats: frozenset, precision: str = "fp32") -> S.Stage:
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
            dec, groups, _ = self.decoder(sysname, feats, set_name, src, precision)
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

    def cslm_modes_system(self) -> str | None:
        """The system whose first tuning run decodes the dev set with the CSLM both ways: the one
        with the fewest features that has the CSLM (+CSLM alone where there is one)."""
        with_cslm = [n for n, f in self.cfg.systems.items() if "cslm" in f]
        return min(with_cslm, key=lambda n: len(self.cfg.systems[n])) if with_cslm else None

    def modes_path(self) -> str:
        return os.path.join(self.d["tune"], "cslm-modes.json")

    def modes_stage(self, sysname: str, feats: frozenset) -> S.Stage:
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
