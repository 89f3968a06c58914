"""``moses.ini``: parse, change a few lines, write back everything else byte for byte.

The file is kept as its list of raw lines; sections (``[feature]``, ``[weight]``, ...) are
located by their headers, and only the lines an operation changes are re-rendered.
Comments, blank lines, order and unknown sections survive untouched.

Operations (each a pure function from ``MosesIni`` to ``MosesIni``):

* ``set_table`` - point a phrase table feature at a new file and set ``num-features`` to
  the number of dense scores that file really has, adding weights (``start_weight``) for
  the new columns or dropping extra ones: idempotent, adding the RNN column twice gives
  one column;
* ``add_feature`` / ``remove_feature`` - a feature line and its weight line;
* ``set_weights`` - weights from a tuning result.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from rescorer.fileio import atomic_write
from rescorer.phrase_table import open_binary, parse_line


class MosesIniError(ValueError):
    pass


_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


@dataclass
class FeatureLine:
    kind: str                       # e.g. PhraseDictionaryMemory
    args: list[tuple[str, str]]     # key=value in order

    @property
    def name(self) -> str:
        """The name its weights go under: name=, or Moses's default, the kind with 0 appended."""
        return self.get("name") or f"{self.kind}0"

    def get(self, key: str) -> str | None:
        for k, v in self.args:
            if k == key:
                return v
        return None

    def set(self, key: str, value: str) -> None:
        for i, (k, _) in enumerate(self.args):
            if k == key:
                self.args[i] = (key, value)
                return
        self.args.append((key, value))

    def render(self) -> str:
        return " ".join([self.kind] + [f"{k}={v}" for k, v in self.args])


def parse_feature_line(text: str, where: str = "") -> FeatureLine:
    parts = text.split()
    if not parts:
        raise MosesIniError(f"{where}: empty feature line")
    args = []
    for p in parts[1:]:
        if "=" not in p:
            raise MosesIniError(f"{where}: feature argument {p!r} is not key=value")
        k, v = p.split("=", 1)
        args.append((k, v))
    return FeatureLine(parts[0], args)


@dataclass
class MosesIni:
    lines: list[str]                # raw lines, newline included
    path: str = "moses.ini"
    _sections: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index()

    @classmethod
    def read(cls, path: str | os.PathLike) -> "MosesIni":
        try:
            with open(path, encoding="utf-8", newline="") as f:
                lines = f.readlines()
        except UnicodeDecodeError as e:
            raise MosesIniError(f"{os.fspath(path)}: not UTF-8 ({e.reason})") from None
        return cls(lines, os.fspath(path))

    def text(self) -> str:
        return "".join(self.lines)

    def write(self, path: str | os.PathLike) -> None:
        with atomic_write(path, "w") as f:
            f.write(self.text())

    def _index(self) -> None:
        self._sections = {}
        current, start = None, 0
        for i, line in enumerate(self.lines):
            m = _SECTION.match(line)
            if m:
                if current is not None:
                    self._sections[current] = (start, i)
                current, start = m.group(1).strip(), i + 1
        if current is not None:
            self._sections[current] = (start, len(self.lines))

    def _content(self, section: str) -> list[tuple[int, str]]:
        """(line index, stripped text) of the non-comment, non-blank lines of a section."""
        if section not in self._sections:
            return []
        a, b = self._sections[section]
        out = []
        for i in range(a, b):
            t = self.lines[i].split("#", 1)[0].strip()
            if t:
                out.append((i, t))
        return out

    def _where(self, i: int) -> str:
        return f"{self.path}:{i + 1}"

    # -- reading --------------------------------------------------------------------------
    def features(self) -> list[FeatureLine]:
        return [parse_feature_line(t, self._where(i)) for i, t in self._content("feature")]

    def feature(self, name: str) -> FeatureLine:
        for f in self.features():
            if f.name == name:
                return f
        raise MosesIniError(f"{self.path}: no feature named {name!r} in [feature]")

    def weights(self) -> dict[str, list[float]]:
        out = {}
        for i, t in self._content("weight"):
            if "=" not in t:
                raise MosesIniError(f"{self._where(i)}: weight line without '=': {t!r}")
            name, vals = t.split("=", 1)
            try:
                out[name.strip()] = [float(v) for v in vals.split()]
            except ValueError:
                raise MosesIniError(f"{self._where(i)}: weights of {name.strip()} are not numbers") from None
        return out

    def section(self, name: str) -> list[str]:
        return [t for _, t in self._content(name)]

    # -- changing ------------------------------------------------------------------------
    def _eol(self) -> str:
        return "\r\n" if self.lines and self.lines[0].endswith("\r\n") else "\n"

    def _replace_line(self, i: int, text: str) -> None:
        raw = self.lines[i]
        comment = ""
        if "#" in raw:
            comment = " #" + raw.split("#", 1)[1].rstrip("\r\n")
        eol = raw[len(raw.rstrip("\r\n")):] or self._eol()
        self.lines[i] = text + comment + eol

    def _find_feature(self, name: str) -> int:
        for i, t in self._content("feature"):
            if parse_feature_line(t, self._where(i)).name == name:
                return i
        raise MosesIniError(f"{self.path}: no feature named {name!r} in [feature]")

    def _find_weight(self, name: str) -> int | None:
        for i, t in self._content("weight"):
            if t.split("=", 1)[0].strip() == name:
                return i
        return None

    def _insert_in_section(self, section: str, text: str) -> None:
        if section not in self._sections:
            if self.lines and not self.lines[-1].endswith("\n"):
                self.lines[-1] += self._eol()
            self.lines += [self._eol(), f"[{section}]{self._eol()}"]
            self._index()
        content = self._content(section)
        at = content[-1][0] + 1 if content else self._sections[section][0]
        self.lines.insert(at, text + self._eol())
        self._index()

    def set_weight_line(self, name: str, values: list[float]) -> None:
        text = f"{name}= " + " ".join(format_weight(v) for v in values)
        i = self._find_weight(name)
        if i is None:
            self._insert_in_section("weight", text)
        else:
            self._replace_line(i, text)

    def set_weights(self, weights: dict[str, list[float]]) -> None:
        """Weights from a tuning result; each named feature must exist with as many values."""
        current = self.weights()
        for name, vals in weights.items():
            if name not in current:
                raise MosesIniError(f"{self.path}: no weight line for {name!r}")
            if len(vals) != len(current[name]):
                raise MosesIniError(f"{self.path}: {name} has {len(current[name])} weights, "
                                    f"{len(vals)} given")
            self.set_weight_line(name, vals)

    def set_table(self, name: str, path: str, n_scores: int, start_weight: float = 0.2) -> None:
        """Point table feature ``name`` at ``path`` holding ``n_scores`` dense scores."""
        i = self._find_feature(name)
        f = parse_feature_line(self.lines[i].split("#", 1)[0], self._where(i))
        f.set("path", path)
        f.set("num-features", str(n_scores))
        self._replace_line(i, f.render())
        w = self.weights().get(name, [])
        self.set_weight_line(name, (w + [start_weight] * n_scores)[:n_scores])

    def set_feature_arg(self, name: str, key: str, value: str) -> None:
        """Set one key=value of feature ``name`` (e.g. its path), keeping the rest of the line."""
        i = self._find_feature(name)
        f = parse_feature_line(self.lines[i].split("#", 1)[0], self._where(i))
        f.set(key, value)
        self._replace_line(i, f.render())

    def add_feature(self, line: str, weights: list[float]) -> None:
        f = parse_feature_line(line, "feature to add")
        if any(g.name == f.name for g in self.features()):
            i = self._find_feature(f.name)
            self._replace_line(i, f.render())
        else:
            self._insert_in_section("feature", f.render())
        self.set_weight_line(f.name, weights)

    def remove_feature(self, name: str) -> None:
        i = self._find_feature(name)
        f = parse_feature_line(self.lines[i].split("#", 1)[0])
        del self.lines[i]
        self._index()
        j = self._find_weight(f.name)
        if j is not None:
            del self.lines[j]
            self._index()


def format_weight(v: float) -> str:
    """A weight as the ini writes it: the shortest text that reads back as the same float (an
    integer without its point), so that decoding from the ini ranks exactly as decoding with the
    weights it was written from."""
    v = float(v)
    if v == 0:
        return "0"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def count_dense_scores(table: str | os.PathLike) -> int:
    """Dense scores on the first line of a phrase table (plain or gzipped)."""
    with open_binary(table) as f:
        first = f.readline()
    if not first:
        raise MosesIniError(f"{os.fspath(table)}: empty phrase table")
    return parse_line(first, os.fspath(table), 1).n_scores
