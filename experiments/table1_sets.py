"""The Table 1 experiment's system and sets: the system's files (and the LM stage when it has
none), the tuning and test sets, their tables filtered to them (``filter-SET``) and every
system's moses.ini per set (``ini-SYSTEM-SET``).  A part of ``table1_experiment.Experiment``."""
from __future__ import annotations

import os

from moses_integration import pipeline as P
from moses_integration import stages as S
from moses_integration.moses_ini import MosesIni
from moses_integration.table_filter import filter_table

from experiments.common import ConfigError, read_lines
from experiments.table1_config import slug, variant


class SetStages:
    """The system, its sets, their filtered tables and the systems' inis (``table1_experiment.Experiment``
    holds the config ``cfg``, the work directories ``d`` and ``progress``)."""

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
                "scored": os.path.join(d, "phrase-table.rnn.gz"), "own": own,
                # with both directions: the forward network's columns alone, before the inverse one's
                "forward": os.path.join(d, "phrase-table.rnn-forward.gz")}

    def filter_stage(self, name: str, s: dict, f: dict, pt: str, rt: str) -> S.Stage:
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

    def system_ini(self, sysname: str, set_name: str, precision: str = "fp32") -> str:
        return os.path.join(self.d["systems"], slug(sysname), variant(f"moses.{slug(set_name)}", precision, ".") + ".ini")

    def ini_stage(self, sysname: str, feats: frozenset, ini: MosesIni, set_name: str, f: dict, lm: str,
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
