#!/usr/bin/env python3
"""When does the RNN feature pay off?  Its BLEU gain over the baseline against the network's
training data, training time, size, direction and the domain of the tuning set.

    python experiments/rnn_gain.py --config experiments/rnn_gain.ini [--report-only]

A point of the study is one network checkpoint (the table it learned from, its size, the
updates it trained, its direction) on one tuning set.  The checkpoints of one network at
several budgets are points of one learning curve: one training run, continued budget after
budget.  Every point is measured as the Table 1 experiment measures a system, with its stages
(``table1_experiment.Experiment``): the tuning set's table scored, MERT runs with their own seeds, the
tuning set decoded with each run's weights; the baseline's runs are shared by all points of a
tuning set.  The systems decode with their own tables filtered to the set: only what the
network learns from changes.

Stages, cached under the work directory, skipped when done, resumable after kill -9:

  whole build    (build_baseline.py's stages, in WORK/whole) the whole phrase table of the
                 system's training text, and the sets a whole-table system is tuned on
  vocab-TABLE-N  the N-word shortlists of a training table (system or whole)
  NET.train-U    the network trained until U updates, continuing the budget before; its
                 best checkpoint then is the point's network (budgets are counted in updates,
                 not minutes: the same updates give the same network whatever else the
                 machine runs; the report gives the minutes each took)
  SET.*          per tuning set, the Table 1 experiment's stages: lm, filter-dev, ini-*, tune-*-K,
                 test-dev-* (the tuning set decoded with each run's weights), score-* (the
                 set's table scored by a point's network; a pair of networks adds a second
                 column), rnn-vs-table-* (the point's score against the table's four)

The report (results.md, results.json, gain-vs-updates.png, gain-vs-perplexity.png) is written
from the stages done so far; choices are made on the tuning sets only.
"""
from __future__ import annotations

import configparser
import json
import logging
import os
import shutil

from moses_integration import stages as S
from rescorer import cli as rescorer_cli
from rescorer.cli import command_options
from rescorer.config import ModelConfig, flops_per_token
from rescorer.fileio import atomic_write
from rescorer.runtime import setup_logging

from experiments import build_baseline
from experiments.common import (ROOT, ConfigError, arguments, errors_exit, read_lines, read_config, stage_records,
                                vocab_stage)
from experiments.rnn_gain_points import BASELINE, budget_text, parse_budget, parse_point, point_name, same_settings
from experiments.rnn_gain_report import summary, write_report
from experiments.table1_experiment import Experiment
from experiments.table1_config import Config, parse_span, slug, train_args

log = logging.getLogger("rnn_gain")

# the keys of [rnn] and [network NAME] the study reads itself; the others are `rescorer train` options
NETWORK_KEYS = ("table", "updates", "shortlist")


class Study:
    """The study's settings (see experiments/rnn_gain.ini), checked before any stage runs: paths
    may use {data}, {work} and {whole} (the work directory of the whole-table build)."""

    def __init__(self, path: str, data: str | None = None, work: str | None = None, progress: bool = True):
        cp = read_config(path)
        self.path, self.cp, self.progress = path, cp, progress
        self.data = os.path.abspath(data or cp.get("data", "dir", fallback="") or os.environ.get("RESCORER_DATA")
                                    or os.path.join(ROOT, "..", "shared", "data"))
        self.work = os.path.abspath(work or cp.get("work", "dir", fallback="work/rnn_gain"))
        self.processes = cp.getint("work", "processes", fallback=os.cpu_count() or 1)
        report = cp.get("work", "report", fallback="").strip()
        self.report = os.path.abspath(report) if report else os.path.join(self.work, "report")
        self.lang = cp.get("system", "target-language", fallback="fr")
        self.whole = build_baseline.WholeBuild.read(cp, path, self.data, self.work)
        self.networks = self._networks()
        self.pairs = self._pairs()
        self.sets = self._sets()
        t = dict(cp["tuning"]) if "tuning" in cp else {}
        self.runs = int(t.get("runs", 2))
        if self.runs < 2:
            raise ConfigError(f"{path}: [tuning] runs = {self.runs}: a point needs at least 2 MERT runs")

    def p(self, text: str) -> str:
        """A path of the config with its placeholders filled in."""
        try:
            out = text.strip().format(data=self.data, work=self.work, whole=self.whole.dir)
        except KeyError as e:
            raise ConfigError(f"{self.path}: {text!r}: unknown placeholder {e} (known: data, work, whole)") from None
        return os.path.abspath(out)

    def _networks(self) -> dict[str, dict]:
        defaults = dict(self.cp["rnn"]) if "rnn" in self.cp else {}
        out = {}
        for sec in self.cp.sections():
            if not sec.startswith("network "):
                continue
            name = sec.split(None, 1)[1].strip()
            where = f"{self.path}: [{sec}]"
            if "@" in name or slug(name) in {slug(n) for n in out}:
                raise ConfigError(f"{where}: a network's name must be unique and have no '@'")
            keys = dict(defaults, **self.cp[sec])
            if "max-minutes" in keys or "max-updates" in keys:
                raise ConfigError(f"{where}: max-minutes and max-updates are set by the study: give updates = "
                                  "the budgets whose checkpoints are points")
            table = keys.get("table", "system").strip()
            if table not in ("system", "whole"):
                raise ConfigError(f"{where}: table = {table!r}: expected system (the system's phrase table) or "
                                  "whole (the whole table of the system's training text, [whole] build)")
            if table == "whole" and not self.whole.config:
                raise ConfigError(f"{where}: table = whole needs [whole] build = (a build_baseline.py config)")
            try:
                updates = sorted(parse_budget(x) for x in keys.get("updates", "").split())
            except ValueError:
                updates = []
            if not updates or len(set(updates)) != len(updates):
                raise ConfigError(f"{where}: updates = {keys.get('updates', '')!r}: the training budgets in updates, "
                                  "distinct positive numbers, e.g. 15k 31k 62k")
            inverse = keys.get("inverse", "").strip().lower() in ("true", "yes", "1")
            out[name] = {"table": table, "updates": updates, "shortlist": int(keys.get("shortlist", 15000)),
                         "inverse": inverse, "options": keys,
                         "args": train_args(f"{self.path}: [{sec}] (or [rnn])", keys, "train", NETWORK_KEYS)}
        if not out:
            raise ConfigError(f"{self.path}: no [network NAME] section")
        return out

    def _pairs(self) -> dict[str, tuple[tuple[str, int], tuple[str, int]]]:
        """[pair NAME]: a network and one trained the other way, both columns in one system."""
        out = {}
        for sec in self.cp.sections():
            if not sec.startswith("pair "):
                continue
            name, where = sec.split(None, 1)[1].strip(), f"{self.path}: [{sec}]"
            nets = []
            for key in ("forward", "inverse"):
                if key not in self.cp[sec]:
                    raise ConfigError(f"{where}: needs {key} = NETWORK@UPDATES")
                nets.append(parse_point(self.cp[sec][key], self.networks, f"{where} {key}"))
            (f, _), (i, _) = nets
            if self.networks[f]["inverse"] or not self.networks[i]["inverse"]:
                raise ConfigError(f"{where}: forward = {f} must learn p(target|source) and inverse = {i} "
                                  "p(source|target) (inverse = true)")
            if self.networks[f]["table"] != self.networks[i]["table"]:
                raise ConfigError(f"{where}: {f} learns from the {self.networks[f]['table']} table but {i} from "
                                  f"the {self.networks[i]['table']} table: a pair's networks share their table")
            out[name] = tuple(nets)
        return out

    def _sets(self) -> dict[str, dict]:
        out = {}
        for sec in self.cp.sections():
            if not sec.startswith("tuning "):
                continue
            name, s, where = sec.split(None, 1)[1].strip(), self.cp[sec], f"{self.path}: [{sec}]"
            for k in ("source", "reference", "raw-reference"):
                if not s.get(k, "").strip():
                    raise ConfigError(f"{where}: needs {k} =")
            system = s.get("system", "system").strip()
            if system not in ("system", "whole"):
                raise ConfigError(f"{where}: system = {system!r}: expected system (the [system] tables filtered to "
                                  "the set) or whole (the whole-table build, filtered to the set)")
            if system == "whole" and not self.whole.config:
                raise ConfigError(f"{where}: system = whole needs [whole] build =")
            points = []
            for text in s.get("points", "all").split():
                if text == "all":
                    points += [point_name(n, m) for n, net in self.networks.items() if not net["inverse"]
                               for m in net["updates"]]
                elif text in self.pairs:
                    points.append(text)
                else:
                    points.append(point_name(*parse_point(text, self.networks, f"{where} points")))
            test = None
            if s.get("test-source", "").strip():
                if not s.get("test-reference", "").strip():
                    raise ConfigError(f"{where}: test-source needs test-reference = (the raw reference)")
                test = {"name": s.get("test-name", "devtest").strip(), "source": self.p(s["test-source"]),
                        "reference": self.p(s["test-reference"]),
                        "lines": parse_span(s.get("test-lines"), f"{where} test-lines")}
            table1 = s.get("table1-report", "").strip()
            if table1:
                table1 = table1 if os.path.isabs(table1) else os.path.join(ROOT, table1)
                if not os.path.exists(table1):
                    raise ConfigError(f"{where}: table1-report = {s['table1-report']}: no such file")
            out[name] = {"table1_report": table1 or None,
                         "source": self.p(s["source"]), "reference": self.p(s["reference"]),
                         "raw-reference": self.p(s["raw-reference"]), "lines": parse_span(s.get("lines"), where),
                         "system": system, "points": list(dict.fromkeys(points)), "test": test}
        if not out:
            raise ConfigError(f"{self.path}: no [tuning NAME] section")
        return out

    def on_build(self, name: str) -> bool:
        """Whether a tuning set's system is one the whole-table build makes."""
        if self.sets[name]["system"] == "whole":
            return True
        ini = self.cp.get("system", "ini", fallback="").strip()  # a [system] inside the build's directory
        return bool(self.whole.config and ini) and self.p(ini).startswith(self.whole.dir + os.sep)

    def check_sets(self) -> None:
        """The sides of every tuning and test set that exists now have as many lines (a set the
        whole-table build writes exists once it has run)."""
        for name, s in self.sets.items():
            pairs = [(s["source"], s["reference"]), (s["source"], s["raw-reference"])]
            if s["test"]:
                pairs.append((s["test"]["source"], s["test"]["reference"]))
            for a, b in pairs:
                missing = [x for x in (a, b) if not os.path.exists(x)]
                if missing and not self.whole.built() and (s["system"] == "whole" or all(
                        x.startswith(self.whole.dir + os.sep) for x in missing)):
                    continue  # the whole-table build writes them
                span = s["lines"] if a == s["source"] else s["test"]["lines"]
                na, nb = len(read_lines(a, span)), len(read_lines(b, span))
                if na != nb:
                    raise ConfigError(f"{self.path}: [tuning {name}]: {a} has {na} lines but {b} has {nb}")

    # -- what a measurement depends on -----------------------------------------------------------
    def _section(self, name: str, drop: tuple[str, ...] = ()) -> dict:
        """A config section as written (paths with their placeholders, so that the same study on
        another machine has the same settings)."""
        return {k: v for k, v in self.cp[name].items() if k not in drop} if name in self.cp else {}

    def baseline_settings(self, arm: str) -> dict:
        """What the baseline of a tuning set depends on: the set, its system and the tuning."""
        system = "system" if self.sets[arm]["system"] == "system" else "whole"
        return {"set": self._section(f"tuning {arm}", ("points",)), "system": self._section(system),
                "tuning": self._section("tuning")}

    def point_settings(self, arm: str, point: str) -> dict:
        """What a point's numbers depend on: its baseline's settings and each of its networks' own
        (options, table, budget; not the other budgets of its curve)."""
        return {**self.baseline_settings(arm),
                "networks": [{"options": {k: v for k, v in self.networks[n]["options"].items() if k != "updates"},
                              "table": self._section(self.networks[n]["table"]), "updates": m}
                             for n, m in self.point_networks(point)]}

    def point_networks(self, point: str) -> list[tuple[str, int]]:
        """The (network, budget) of a point: one, or a pair's two (forward, inverse)."""
        return list(self.pairs[point]) if point in self.pairs else [parse_point(point, self.networks, point)]

    def carried_path(self) -> str:
        return os.path.join(self.work, "carried.json")

    def measured_here(self, arm: str, point: str) -> bool:
        """Whether the work directory holds a point's measurement (every run's tuning and output)."""
        exp = self.experiment(arm)
        return all(os.path.exists(exp.tuned_path(point, k)) and os.path.exists(exp.output_path("dev", point, k))
                   for k in range(1, self.runs + 1))

    def carried_from_report(self) -> list[tuple[str, str]]:
        """The (tuning set, point) pairs the report at ``self.report`` measured with the settings
        they have now and the work directory does not hold (see ``rnn_gain_report.carry_over``)."""
        path = os.path.join(self.report, "results.json")
        if not os.path.exists(path):
            return []
        try:
            with open(path) as f:
                prev = json.load(f)
        except ValueError as e:
            raise ConfigError(f"{path}: not the JSON of a report ({e}): move it away to measure every point") from None
        return [(arm, p) for arm, a in prev.get("sets", {}).items() if arm in self.sets
                for p, d in a.get("points", {}).items()
                if p in self.sets[arm]["points"] and same_settings(d.get("settings"), self.point_settings(arm, p))
                and not self.measured_here(arm, p)]

    def carried(self) -> set[tuple[str, str]]:
        """The points not measured again: those the report held when this run began (``run``
        writes them to the work directory, so that every stage process of the run, and the
        reports written meanwhile, see the stage list the run began with)."""
        path = self.carried_path()
        if os.path.exists(path):  # (set, point, its settings then): a point whose settings changed since is measured
            with open(path) as f:
                return {(arm, p) for arm, p, was in json.load(f) if arm in self.sets and p in self.sets[arm]["points"]
                        and same_settings(was, self.point_settings(arm, p))}
        return set(self.carried_from_report())

    # -- networks ------------------------------------------------------------------------------
    def net_dir(self, net: str) -> str:
        return os.path.join(self.work, "networks", slug(net))

    def vocab_dir(self, net: str) -> str:
        """The shortlists of a network's table: shared by the networks of one table and size."""
        n = self.networks[net]
        return os.path.join(self.work, "networks", f"vocab-{n['table']}-{n['shortlist']}")

    def checkpoint(self, net: str, updates: int) -> str:
        return os.path.join(self.net_dir(net), f"at-{budget_text(updates)}.pt")

    def table_of(self, net: str, system_table: str) -> str:
        return self.whole.table if self.networks[net]["table"] == "whole" else system_table

    def _network_stages(self, net: str, table: str) -> tuple[S.Stage, dict[float, S.Stage]]:
        """The shortlists of the network's table, and one stage per budget: training continued
        to that many updates, its best checkpoint copied to ``at-U.pt`` (and ``.json``: its
        validation perplexity, updates and minutes)."""
        n = self.networks[net]
        d = self.net_dir(net)
        vocab = self.vocab_dir(net)
        vst = vocab_stage(table, vocab, n["shortlist"])
        vst.name = os.path.basename(vocab)
        opts = n["args"]
        run_dir = os.path.join(d, "run")
        out = {}
        prev = None
        for m in n["updates"]:
            ins = [table, os.path.join(vocab, "target.vocab")] + ([prev] if prev else [])
            ck = self.checkpoint(net, m)
            st = S.Stage(f"{slug(net)}.train-{budget_text(m)}", ins, [ck, ck[:-3] + ".json"], None,
                         {"options": opts, "updates": m})
            st.run = self._train_run(st, net, table, vocab, run_dir, opts, m, first=prev is None)
            out[m], prev = st, ck
        return vst, out

    def _train_run(self, st: S.Stage, net: str, table: str, vocab: str, run_dir: str, opts: list[str],
                   updates: int, first: bool):
        def run():
            last = os.path.join(run_dir, "last.pt")
            if first and not st.resume and os.path.exists(run_dir):
                shutil.rmtree(run_dir)  # the first budget's settings changed: a new run
            if first and not os.path.exists(os.path.join(run_dir, "data")):
                self._share_prepared_pairs(net, table, run_dir)
            if not first and not os.path.exists(last):
                raise RuntimeError(f"{st.name}: {last} is missing: the run the earlier budgets trained is gone "
                                   "(run again with --force)")
            summary = os.path.join(run_dir, "summary.json")
            if os.path.exists(summary):
                with open(summary) as f:
                    done = json.load(f)["updates"]
                if done > updates:
                    raise RuntimeError(f"{st.name}: {run_dir} has made {done} updates, past this budget "
                                       "(run again with --force to train from the start)")
            if rescorer_cli.main(["train", "--phrase-table", table, "--vocab", vocab, "--out", run_dir, *opts,
                     "--max-updates", str(updates)] + (["--resume"] if os.path.exists(last) else [])
                    + ([] if self.progress else ["-q"])) != 0:
                raise RuntimeError(f"rescorer train failed ({st.name})")
            with open(summary) as f:
                s = json.load(f)
            ck = st.outputs[0]
            with open(os.path.join(run_dir, "best.pt"), "rb") as f, atomic_write(ck, "wb") as g:
                shutil.copyfileobj(f, g)
            info = {"budget_updates": updates, "minutes": s["minutes"], "updates": s["updates"],
                    "best_valid_ppl": s["best_valid_ppl"], "stop": s.get("stop")}
            with atomic_write(ck[:-3] + ".json", "w") as f:
                json.dump(info, f, indent=1)
            return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in info.items()}
        return run

    def _share_prepared_pairs(self, net: str, table: str, run_dir: str) -> None:
        """Hard links to the pairs another network's run prepared from the same table (the
        trainer's own check of their settings, its meta.json, decides whether it uses them or
        prepares its own): the networks of one table do not read millions of lines each."""
        for other in self.networks:
            data = os.path.join(self.net_dir(other), "run", "data")
            try:
                with open(os.path.join(data, "meta.json")) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            if (meta.get("table") != os.path.abspath(table) or data == os.path.join(run_dir, "data")
                    or meta.get("inverse") != self.networks[net]["inverse"]
                    or str(meta.get("seed")) != str(self.networks[net]["options"].get("seed", meta.get("seed")))):
                continue
            tmp = os.path.join(run_dir, "data.linking")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            for name in os.listdir(data):
                os.link(os.path.join(data, name), os.path.join(tmp, name))
            os.replace(tmp, os.path.join(run_dir, "data"))
            log.info("%s: the pairs %s prepared, linked (the trainer checks their settings)", run_dir, data)
            return

    # -- tuning sets -----------------------------------------------------------------------------
    def experiment(self, name: str) -> Experiment:
        """The Table 1 experiment of one tuning set: its system, the baseline and one +RNN system
        per point."""
        s = self.sets[name]
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        if s["system"] == "whole":
            cp["system"] = {"ini": os.path.join(self.whole.dir, "model", "moses.ini"), "target-language": self.lang}
        else:
            sysec = dict(self.cp["system"])
            for k in ("ini", "build"):
                if k in sysec:
                    sysec[k] = self.p(sysec[k])
            sysec["lm-text"] = " ".join(self.p(x) for x in sysec.get("lm-text", "").split())
            cp["system"] = sysec
        cp["dev"] = {"source": s["source"], "reference": s["reference"]}
        if s["lines"]:
            cp["dev"]["lines"] = f"{s['lines'][0]}-{s['lines'][1]}"
        if s["test"]:
            cp[f"test {s['test']['name']}"] = {"source": s["test"]["source"], "reference": s["test"]["reference"]}
            if s["test"]["lines"]:
                cp[f"test {s['test']['name']}"]["lines"] = "-".join(map(str, s["test"]["lines"]))
        cp["systems"] = {BASELINE: "", **{p: "rnn" for p in s["points"]}}
        cp["tuning"] = dict(self.cp["tuning"]) if "tuning" in self.cp else {}
        cfg = Config(self.path, self.data, os.path.join(self.work, "sets", slug(name)), cp=cp, tests_needed=False)
        cfg.processes = self.processes
        return Experiment(cfg, progress=self.progress)

    def scored(self, files: dict, point: str) -> str:
        return os.path.join(files["dir"], f"phrase-table.{slug(point)}.gz")

    def columns(self, point: str) -> int:
        return 7 if point in self.pairs else 6

    def _score_stages(self, set_name: str, exp: Experiment, files: dict, point: str, label: str = "") -> list[S.Stage]:
        """A set's table scored with the point's network; for a pair, with its forward network
        (unless that one is a point of the set too, whose own stage scores it) and then its
        inverse one, added as a second column.  ``label``: the set's name in the stages' names,
        empty for the tuning set."""
        tag = f"{slug(label)}-" if label else ""
        out = []
        if point in self.pairs:
            (f_net, f_m), (i_net, i_m) = self.pairs[point]
            fwd = self.scored(files, point_name(f_net, f_m))
            if point_name(f_net, f_m) not in self.sets[set_name]["points"]:
                out.append(exp.score_stage(label or point_name(f_net, f_m), dict(files, scored=fwd),
                                           self.checkpoint(f_net, f_m)))
                out[-1].name = f"score-{tag}{slug(point_name(f_net, f_m))}"
            out.append(exp.score_stage(label or point, dict(files, scored=self.scored(files, point)),
                                       self.checkpoint(i_net, i_m), table=fwd, unk_count=False))
        else:
            net, m = parse_point(point, self.networks, point)
            out.append(exp.score_stage(label or point, dict(files, scored=self.scored(files, point)),
                                       self.checkpoint(net, m)))
        out[-1].name = f"score-{tag}{slug(point)}"
        return out

    def _point_stages(self, set_name: str, exp: Experiment, files: dict, ini, lm: str, point: str) -> list[S.Stage]:
        """Score the tuning set's table with the point's network(s), tune, decode the set with each
        run's weights, and compare the score with the table's."""
        out = self._score_stages(set_name, exp, files, point)
        f = dict(files, scored=self.scored(files, point))
        out.append(exp.ini_stage(point, frozenset({"rnn"}), ini, "dev", f, lm, columns=self.columns(point)))
        out += [exp.tune_stage(point, frozenset({"rnn"}), k) for k in range(1, self.runs + 1)]
        out.append(exp.test_stage("dev", exp.sets()["dev"], point, frozenset({"rnn"})))
        out.append(exp.correlation_stage(f, self.correlation_path(files, point), self.columns(point)))
        out[-1].name = f"rnn-vs-table-{slug(point)}"
        return out

    def correlation_path(self, files: dict, point: str) -> str:
        return os.path.join(files["dir"], f"rnn-vs-table.{slug(point)}.json")

    # -- the whole study ---------------------------------------------------------------------------
    def stages(self) -> list[S.Stage]:
        """Every stage, in the order that answers first what costs least: the budgets from the
        least compute (``compute``), each network's checkpoint then evaluated on every tuning
        set that has it as a point, a tuning set's baseline just before its first point, a pair
        once both its networks are trained."""
        self.check_sets()
        # a set of the whole-table system has stages once that system is built (run() builds it
        # first; --report-only before then lists the other sets' stages)
        self.exps = {name: self.experiment(name) for name in self.sets if self.whole.built() or not self.on_build(name)}
        arms = {}
        system_table = None
        for name, exp in self.exps.items():
            ini, pt, rt, lm, setup = exp.system()
            for t in (pt, rt):
                if not os.path.exists(t):
                    raise ConfigError(f"{self.path}: [tuning {name}]: the system's table {t} does not exist")
            exp.lm_path = lm
            sets = exp.sets()
            files = {n: exp.set_files(n, s, pt, rt) for n, s in sets.items()}
            setup += [exp.filter_stage(n, s, files[n], pt, rt) for n, s in sets.items()]
            setup.append(exp.ini_stage(BASELINE, frozenset(), ini, "dev", files["dev"], lm))
            setup += [exp.tune_stage(BASELINE, frozenset(), k) for k in range(1, self.runs + 1)]
            setup.append(exp.test_stage("dev", sets["dev"], BASELINE, frozenset()))
            tests = [(n, s) for n, s in sets.items() if s["kind"] == "test"]
            for n, _ in tests:
                setup.append(exp.ini_stage(BASELINE, frozenset(), ini, n, files[n], lm))
                setup.append(exp.test_stage(n, sets[n], BASELINE, frozenset()))
            arms[name] = {"exp": exp, "setup": setup, "files": files, "ini": ini, "lm": lm, "tests": tests,
                          "started": False}
            if self.sets[name]["system"] == "system":
                system_table = pt
        out: list[S.Stage] = []

        def add(arm: str, stages: list[S.Stage]) -> None:
            for st in stages:
                st.name = f"{slug(arm)}.{st.name}"
            out.extend(stages)

        carried = self.carried()

        def evaluate(point: str) -> None:
            for arm, a in arms.items():
                if point not in self.sets[arm]["points"] or (arm, point) in carried:
                    continue
                if not a["started"]:
                    add(arm, a["setup"])
                    a["started"] = True
                exp = a["exp"]
                stages = self._point_stages(arm, exp, a["files"]["dev"], a["ini"], a["lm"], point)
                for n, _ in a["tests"]:  # a test set: the point's network(s) score its table too
                    f = dict(a["files"][n], scored=self.scored(a["files"][n], point))
                    stages += self._score_stages(arm, exp, a["files"][n], point, n)
                    stages += [exp.ini_stage(point, frozenset({"rnn"}), a["ini"], n, f, a["lm"],
                                             columns=self.columns(point)),
                               exp.test_stage(n, exp.sets()[n], point, frozenset({"rnn"}))]
                add(arm, stages)

        trains = {}
        for net, n in self.networks.items():
            if n["table"] == "system" and system_table is None:
                if any(self.sets[a]["system"] == "system" for a in self.sets):
                    continue  # the system is the whole-table build's: its networks are listed once it is built
                raise ConfigError(f"{self.path}: [network {net}] table = system: no [tuning NAME] decodes with the "
                                  "[system] tables (system = system)")
            trains[net] = self._network_stages(net, self.table_of(net, system_table))
        # a budget is trained when a point still to measure needs it or a later budget of its run
        needed: dict[str, int] = {}
        for arm, s in self.sets.items():
            for point in s["points"]:
                if (arm, point) in carried:
                    continue
                for net, m in self.point_networks(point):
                    needed[net] = max(needed.get(net, 0), m)
        trained: set[tuple[str, int]] = set()
        pending_pairs = dict(self.pairs)
        to_measure = {pn for arm, s in self.sets.items() for point in s["points"] if (arm, point) not in carried
                      for pn in self.point_networks(point)}
        # the budgets by their compute, the least first; at equal compute the networks with a point
        # to measure there first: a network trained only for a later budget does not delay answers
        budgets = sorted(((self.compute(net, m), (net, m) not in to_measure, net, m)
                          for net in trains for m in self.networks[net]["updates"] if m <= needed.get(net, 0)))
        for _, _, net, m in budgets:
            vst, by_m = trains[net]
            if m == self.networks[net]["updates"][0] and vst.name not in {st.name for st in out}:
                out.append(vst)
            out.append(by_m[m])
            trained.add((net, m))
            if not self.networks[net]["inverse"]:
                evaluate(point_name(net, m))
            for name, (f, i) in list(pending_pairs.items()):
                if f in trained and i in trained:
                    evaluate(name)
                    del pending_pairs[name]
        return out

    def train_option(self, net: str, key: str) -> int:
        """A network's numeric `rescorer train` option: its key, else the command's default."""
        return int(self.networks[net]["options"].get(key) or command_options("train")[key].default)

    def compute(self, net: str, updates: int) -> float:
        """A budget's training compute, for ordering: the pairs it trains on (updates times the
        batch size) times the multiply-adds of a decoder step of the network's size."""
        n = self.networks[net]["shortlist"]
        cfg = ModelConfig(n, n, *(self.train_option(net, k) for k in ("hidden", "rank", "maxout-units")))
        return updates * self.train_option(net, "batch-size") * flops_per_token(cfg)["decoder_step"]

    def run(self, force: bool = False, remeasure: bool = False) -> list[dict]:
        """Every stage not done yet, the whole-table build first; the points the report already
        holds with the same settings are not measured again (``remeasure``: they are)."""
        with atomic_write(self.carried_path(), "w") as f:
            json.dump([] if remeasure else [[arm, p, self.point_settings(arm, p)]
                                            for arm, p in sorted(self.carried_from_report())], f)
        records = []
        if self.whole.config:
            records.append(self.whole.run(self.data, self.progress))
        command = S.stage_command(__file__, ["--config", self.path, "--data", self.data, "--work", self.work,
                                             "--report", self.report] + ([] if self.progress else ["-q"]))
        records += S.run_stages(self.stages(), self.work, force, isolate=command)
        with atomic_write(os.path.join(self.work, "stages.json"), "w") as f:
            json.dump(records, f, indent=1)
        return records


def main(argv: list[str] | None = None) -> dict:
    ap = arguments(__doc__, os.path.join(ROOT, "experiments", "rnn_gain.ini"))
    ap.add_argument("--remeasure", action="store_true",
                    help="measure again the points the report already holds with the same settings (by default "
                         "they are kept from it and their stages are not run)")
    a = ap.parse_args(argv)
    with errors_exit(log):
        study = Study(a.config, a.data, a.work, progress=not a.quiet)
        if a.report:
            study.report = os.path.abspath(a.report)
        os.makedirs(study.work, exist_ok=True)
        setup_logging(os.path.join(study.work, "rnn_gain.log"), extra=("rnn_gain", "reproduce"))
        if a.run_stage:
            return S.run_one_stage(study.stages(), a)
        records = stage_records(study.stages, study.work, a, lambda force: study.run(force, a.remeasure))
        if a.report_only and study.whole.config and not study.whole.built():
            records.insert(0, {"stage": "whole-build", "pending": True})
        results = write_report(study, records)
        print(summary(results))
        return results


if __name__ == "__main__":
    main()
