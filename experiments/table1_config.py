"""The Table 1 experiment's settings: its config file (experiments/table1.ini), the systems and
sets it names, the paths it fills in, and the mapping of its [rnn] and [cslm] keys to the training
commands' flags (config keys = flags, OpenNMT's rule)."""
from __future__ import annotations

import configparser
import os
import re

from rescorer.cli import command_options

from experiments.build_baseline import WholeBuild
from experiments.common import ConfigError, data_dir, read_config


FEATURES = {"rnn", "cslm", "wp"}
# the files a released moses.ini needs, by role, and the feature of the ini that reads each
ROLES = {"phrase-table": "TranslationModel0", "reordering-table": "LexicalReordering0", "lm": "LM0",
         "cslm": "CSLM0"}
# the config keys of [rnn] and [cslm] that are options of both training commands
# the keys of [rnn] and [cslm] the experiment reads itself; every other key of those sections is an
# option of the training command, spelled as its flag (OpenNMT's rule: config keys = flags)
EXPERIMENT_KEYS = {"train": ("table", "shortlist", "check-precision", "directions"),
                   "cslm-train": ("text", "mode", "search-standin", "start-share", "nbest")}
# the options the experiment gives the training command itself
SET_BY_EXPERIMENT = ("phrase-table", "vocab", "shortlist", "output", "out", "input", "text", "resume", "overwrite",
                     "quiet", "verbose", "help")



def parse_span(text: str | None, where: str) -> tuple[int, int] | None:
    """'1-1000' -> (1, 1000): lines, 1-based and inclusive."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) < int(m[1]):
        raise ConfigError(f"{where}: lines = {text!r}: expected FIRST-LAST, e.g. 1-1000")
    return int(m[1]), int(m[2])


class Config:
    """The experiment's settings (see experiments/table1.ini); paths may use {data}, {work},
    {build} (the work directory of the system built from raw text) and {whole} (that of the
    [whole] build, the whole phrase table of a system's training text, which the networks can
    learn from while the system decodes with its own tables)."""

    def __init__(self, path: str, data: str | None = None, work: str | None = None,
                 cp: configparser.ConfigParser | None = None, tests_needed: bool = True):
        """``cp``: the settings already parsed (an experiment built on this one makes its own, and
        ``path`` is then the file its errors name); ``tests_needed``: refuse a config without a
        [test NAME] section."""
        if cp is None:
            cp = read_config(path)
        self.path, self.cp = path, cp
        self.data = data_dir(data, cp.get("data", "dir", fallback=""))
        self.work = os.path.abspath(work or cp.get("work", "dir", fallback="work/table1"))
        self.build = cp.get("system", "build", fallback="").strip() or None
        self.whole = WholeBuild.read(cp, path, self.data, self.work)
        self.processes = cp.getint("work", "processes", fallback=os.cpu_count() or 1)
        report = cp.get("work", "report", fallback="").strip()
        self.report = os.path.abspath(report) if report else os.path.join(self.work, "report")
        previous = cp.get("work", "previous", fallback="").strip()
        self.previous = os.path.abspath(previous) if previous else None
        if self.previous and not os.path.exists(self.previous):
            raise ConfigError(f"{path}: [work] previous = {previous}: no such file (the results.json of an "
                              "earlier run of this experiment, shown beside this one's)")
        self.systems = self._systems()
        self.rnn_both = self._rnn_directions() == "both"
        self.tests = {s.split(None, 1)[1].strip(): self._set(s) for s in cp.sections() if s.startswith("test ")}
        if not self.tests and tests_needed:
            raise ConfigError(f"{path}: no [test NAME] section")
        self.dev = self._set("dev")

    def p(self, text: str) -> str:
        """A path of the config with its placeholders filled in."""
        try:
            out = text.strip().format(data=self.data, work=self.work, build=os.path.join(self.work, "build"),
                                      whole=self.whole.dir)
        except KeyError as e:
            raise ConfigError(f"{self.path}: {text!r}: unknown placeholder {e} (known: data, work, build, whole)") \
                from None
        return os.path.abspath(out)

    def get(self, section: str, key: str, fallback=None):
        return self.cp.get(section, key, fallback=fallback)

    def _set(self, section: str) -> dict:
        if section not in self.cp:
            raise ConfigError(f"{self.path}: no [{section}] section")
        s = self.cp[section]
        for k in ("source", "reference"):
            if k not in s:
                raise ConfigError(f"{self.path}: [{section}] needs {k} =")
        out = {"source": self.p(s["source"]), "reference": self.p(s["reference"]),
               "lines": parse_span(s.get("lines"), f"{self.path} [{section}]")}
        for k in ("tokenised-reference", "phrase-table", "reordering-table"):
            out[k] = self.p(s[k]) if s.get(k, "").strip() else None
        if bool(out["phrase-table"]) != bool(out["reordering-table"]):
            raise ConfigError(f"{self.path}: [{section}] gives phrase-table and reordering-table together or neither")
        return out

    def _systems(self) -> dict[str, frozenset]:
        if "systems" not in self.cp:
            raise ConfigError(f"{self.path}: no [systems] section")
        out = {}
        for name, feats in self.cp["systems"].items():
            fs = frozenset(feats.split())
            if fs - FEATURES:
                raise ConfigError(f"{self.path}: [systems] {name}: unknown feature(s) {sorted(fs - FEATURES)} "
                                  f"(known: {', '.join(sorted(FEATURES))})")
            if "wp" in fs and "rnn" not in fs:
                raise ConfigError(f"{self.path}: [systems] {name}: wp needs rnn (both come from the scored table)")
            out[name] = fs
        if frozenset() not in out.values():
            raise ConfigError(f"{self.path}: [systems] needs a baseline (a system with no feature)")
        return out

    def _rnn_directions(self) -> str:
        """[rnn] directions: forward (the RNN's p(target|source), the paper's feature) or both (and a
        second network with the same options trained the other way, p(source|target), as a
        further column: Moses's tables have both directions of every other score)."""
        d = self.cp.get("rnn", "directions", fallback="forward").strip() or "forward"
        if d not in ("forward", "both"):
            raise ConfigError(f"{self.path}: [rnn] directions = {d!r}: expected forward (p(target|source)) or both "
                              "(and p(source|target) from a second network)")
        if d == "both" and self.cp.get("rnn", "inverse", fallback="").strip().lower() in ("true", "yes", "1"):
            raise ConfigError(f"{self.path}: [rnn] directions = both and inverse = true: with both, the second "
                              "network is the inverse one; leave inverse out")
        return d

    @property
    def baseline(self) -> str:
        return next(n for n, f in self.systems.items() if not f)

    def section(self, name: str) -> dict:
        return dict(self.cp[name]) if name in self.cp else {}


def train_args(where: str, r: dict, command: str, own_keys: tuple[str, ...] = ()) -> list[str]:
    """Command-line options of a training command from the keys of a config section that are
    its options, in the command's own order; any other key, besides the experiment's own
    (``EXPERIMENT_KEYS`` and ``own_keys``), is refused, naming it (``where``: the file and section)."""
    known = command_options(command)
    own = EXPERIMENT_KEYS[command] + own_keys
    for k in r:
        if k not in own and (k not in known or k in SET_BY_EXPERIMENT):
            raise ConfigError(f"{where} {k}: not an option of rescorer {command} (the keys of the section are its "
                              f"options, spelled as its flags, besides {', '.join(own)})")
    args = []
    for k, action in known.items():
        v = r.get(k, "").strip()
        if not v or k in own or k in SET_BY_EXPERIMENT:
            continue
        if action.nargs == 0:   # a switch: on with true/yes/1
            if v.lower() not in ("true", "yes", "1", "false", "no", "0"):
                raise ConfigError(f"{where} {k} = {v}: true or false")
            args += [f"--{k}"] if v.lower() in ("true", "yes", "1") else []
        else:
            args += [f"--{k}"] + v.split()
    return args


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "x"


def variant(name: str, precision: str, sep: str = "-") -> str:
    """A stage's or file's name for the RNN scored in ``precision`` (fp32: the name itself)."""
    return name if precision == "fp32" else f"{name}{sep}{precision}"
