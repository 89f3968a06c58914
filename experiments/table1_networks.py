"""The Table 1 experiment's networks: the RNN Encoder-Decoder and the CSLM trained
(``rnn``, ``cslm``), the sets' tables scored by the RNN (``score-SET``, also in reduced
precision) and the RNN score against the table's own (``rnn-vs-table-dev``).  A part of
``table1_experiment.Experiment``."""
from __future__ import annotations

import json
import os
import shutil

from moses_integration import stages as S
from moses_integration.table_filter import read_columns, source_spans
from rescorer import cli as rescorer_cli
from rescorer.fileio import atomic_write

from experiments.common import ConfigError, read_lines
from experiments.table1_config import slug, train_args, variant
from experiments.table1_stats import score_differences, table_correlations, table_fit


class NetworkStages:
    """Training the networks, scoring the tables with the RNN, the RNN against the table."""

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
    def scored_path(f: dict, precision: str = "fp32", key: str = "scored") -> str:
        """A set's table scored by the RNN (``key``: or the forward network's alone) in ``precision``."""
        return variant(f[key][:-len(".gz")], precision, ".") + ".gz"

    def rnn_runs(self) -> list[tuple[str, str]]:
        """The RNN networks the +RNN systems score with, as (name, training directory): ``rnn``,
        the paper's p(target|source), and with ``[rnn] directions = both`` ``rnn-inverse``,
        p(source|target) from the same options."""
        names = ["rnn"] + (["rnn-inverse"] if self.cfg.rnn_both else [])
        return [(name, os.path.join(self.d[name], "run")) for name in names]

    def rnn_models(self) -> list[tuple[str, str]]:
        """``rnn_runs``'s networks as (name, checkpoint)."""
        return [(name, os.path.join(d, "best.pt")) for name, d in self.rnn_runs()]

    def rnn_columns(self) -> int:
        """The scores per line of a table the +RNN systems decode with: the table's four, the
        RNN's, the WP feature's, and with both directions the inverse network's."""
        return 7 if self.cfg.rnn_both else 6

    def rnn_stage(self, table: str, vocab_dir: str, run_dir: str, r: dict, inverse: bool = False) -> S.Stage:
        """A network trained on the unique pairs of ``table``: ``rescorer train`` with the [rnn]
        options (``inverse``: and --inverse, the stage ``rnn-inverse``)."""
        opts = train_args(f"{self.cfg.path}: [rnn]", r, "train") + (["--inverse"] if inverse else [])

        st = S.Stage("rnn-inverse" if inverse else "rnn", [table, os.path.join(vocab_dir, "target.vocab")],
                     [os.path.join(run_dir, "summary.json"), os.path.join(run_dir, "best.pt")], None,
                     {"options": opts})

        def run():
            return self.train("train", ["--phrase-table", table, "--vocab", vocab_dir], run_dir, opts, st.resume)
        st.run = run
        return st

    def rnn_score_stages(self, name: str, f: dict, precision: str = "fp32", reference: dict | None = None
                         ) -> list[S.Stage]:
        """A set's table scored by the RNN into ``f["scored"]`` (in ``precision``; ``reference``: the
        set's fp32 files, whose scores the reduced precision's are compared with): the RNN's and
        the WP column; with both directions, first into ``f["forward"]``, then the inverse
        network's column added after them (the stage ``score-SET-inverse``)."""
        (_, fwd_model), *inverse = self.rnn_models()
        fwd = dict(f, scored=self.scored_path(f, precision, "forward" if inverse else "scored"))
        out = [self.score_stage(name, fwd, fwd_model, precision,
                                reference=reference and reference["forward" if inverse else "scored"])]
        for _, inv_model in inverse:
            st = self.score_stage(name, dict(f, scored=self.scored_path(f, precision)), inv_model, precision,
                                  reference=reference and reference["scored"], table=fwd["scored"],
                                  unk_count=False, column=6)
            st.name = variant(f"score-{slug(name)}-inverse", precision)
            out.append(st)
        return out

    def train(self, command: str, inputs: list[str], out: str, opts: list[str], resume: bool) -> dict:
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

    def score_stage(self, name: str, f: dict, model: str, precision: str = "fp32",
                     reference: str | None = None, table: str | None = None, unk_count: bool = True,
                     column: int = 4) -> S.Stage:
        """The set's table (or ``table``) scored by the RNN: ``f["scored"]`` with the RNN's column and,
        with ``unk_count``, the WP column; in reduced precision, also how far its scores (column
        ``column``, 0-based) are from the fp32 table ``reference`` (``OUT.diff.json``)."""
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
            d = score_differences(reference, f["scored"], column)
            with atomic_write(outs[1], "w") as out:
                json.dump(d, out, indent=1)
            return {k: round(v, 4) for k, v in d.items() if isinstance(v, float)}
        st.run = run
        return st

    def cslm_stage(self, vocab_dir: str, lm: str) -> S.Stage:
        c = self.cfg.section("cslm")
        texts = [self.cfg.p(t) for t in (c.get("text") or self.cfg.get("system", "lm-text", "")).split()]
        if not texts:
            raise ConfigError(f"{self.cfg.path}: [cslm] text = (the LM's training text) is not given")
        out = self.d["cslm"]
        opts = train_args(f"{self.cfg.path}: [cslm]", c, "cslm-train")

        st = S.Stage("cslm", texts + [os.path.join(vocab_dir, "target.vocab")],
                     [os.path.join(out, "summary.json"), os.path.join(out, "best.pt")], None, {"options": opts})

        def run():
            return self.train("cslm-train", ["--text", *texts, "--vocab", vocab_dir], out, opts, st.resume)
        st.run = run
        return st

    def cslm_model(self) -> str:
        """The CSLM the systems with it decode with."""
        return os.path.join(self.d["cslm"], "best.pt")

    def correlation_path(self) -> str:
        return os.path.join(self.d["sets"], "dev", "rnn-vs-table.json")

    def correlation_stage(self, f: dict, out: str | None = None, columns: int = 6) -> S.Stage:
        """How the RNN score relates to the table's own scores on the dev set's scored table
        ``f["scored"]`` (``table_correlations``, and ``table_fit`` under "linear_fit", written to
        ``out``): does it bring the decoder something the counts do not?  ``columns``: the scores
        per line of that table."""
        out = out or self.correlation_path()
        st = S.Stage("rnn-vs-table-dev", [f["scored"]], [out], None, {"measures": "correlations, linear fit"})

        def run():
            src, tgt, scores = read_columns(f["scored"], source_spans(read_lines(f["source"])), columns,
                                            self.progress)
            c = table_correlations(src, scores)
            c["linear_fit"] = table_fit(src, tgt, scores)
            with atomic_write(out, "w") as fh:
                json.dump(c, fh, indent=1)
            return {"pairs": c["pairs"], "spearman_direct": round(c["columns"]["p(target|source)"]["spearman"], 3),
                    "r2_within_source": round(c["linear_fit"]["within_source"], 3)}
        st.run = run
        return st
