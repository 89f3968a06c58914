"""The Table 1 experiment's release (``release``): the networks in fp16, their shortlists and
every run's tuned moses.ini beside the report, enough to translate other test sets without
the work directory (``experiments/release.py`` does that).  A part of ``table1_experiment.Experiment``."""
from __future__ import annotations

import json
import os
import shutil

from moses_integration import stages as S
from moses_integration.moses_ini import MosesIni, format_weight
from rescorer.fileio import atomic_write

from experiments.common import read_lines
from experiments.table1_config import ROLES, slug
from experiments.table1_stats import tuned_weights


class ReleaseStage:
    """The release stage and where it writes."""

    def release_paths(self) -> dict:
        """Where the release goes, in the report's directory: the networks, their vocabularies, and
        each system's tuned moses.ini per run."""
        rel = self.cfg.report
        return {"models": os.path.join(rel, "models"), "moses": os.path.join(rel, "moses")}

    def released_ini(self, sysname: str, k: int) -> str:
        return os.path.join(self.release_paths()["moses"], slug(sysname), f"run{k}.ini")

    def release_stage(self, vocab_dir: str | None, rnn: bool, cslm: bool) -> S.Stage:
        """What a test set added elsewhere needs without retraining or retuning: the RNN and the
        CSLM with their weights in fp16 and no trainer state (``export_checkpoint``), the
        shortlists, and every run's tuned moses.ini.  The inis name their files by base name
        (``phrase-table.rnn.gz``: the set's table filtered and scored with ``models/rnn.pt``),
        to be pointed at a set's own files with ``rescorer ini set-table`` or by hand."""
        paths = self.release_paths()
        nets = (self.rnn_models() if rnn else []) + (
            [("cslm", os.path.join(self.d["cslm"], "best.pt"))] if cslm else [])
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
                                "--unk-count` (columns 5 and 6: the RNN and the WP feature)"
                                + (", then by `rescorer score --model rnn-inverse.pt` (column 7: the inverse "
                                   "network's p(source|target))." if self.cfg.rnn_both else "."))
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
