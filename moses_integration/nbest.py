"""Moses n-best lists: read, write, append named features, re-rank.

    0 ||| la maison bleue ||| LexicalReordering0= -1.2 0 0 0 0 0 Distortion0= 0 LM0= -12.5 ||| -5.43

Fields: sentence id (0-based), hypothesis, feature values in named dense groups (a name
ends in ``=``; older lists use short names ending in ``:`` such as ``lm:`` or ``tm:``),
weighted total, then optional fields (segmentation such as ``0-1=0-1``, word alignment)
which are kept as they are.  An entry keeps its raw fields, so writing back an unchanged
list gives the same bytes; appending a feature touches only the feature field.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from rescorer.fileio import atomic_write

SEP = " ||| "


class NBestError(ValueError):
    pass


@dataclass
class Hypothesis:
    sent_id: int
    fields: list[str]               # raw fields, newline excluded
    features: list[tuple[str, list[float]]]
    eol: str = "\n"

    @property
    def text(self) -> str:
        return self.fields[1].strip()

    @property
    def total(self) -> float:
        return float(self.fields[3])

    def feature_dict(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for name, vals in self.features:
            out.setdefault(name, []).extend(vals)
        return out

    def line(self) -> str:
        return SEP.join(self.fields) + self.eol


def parse_features(text: str, where: str = "") -> list[tuple[str, list[float]]]:
    groups: list[tuple[str, list[float]]] = []
    for tok in text.split():
        if tok.endswith("=") or (tok.endswith(":") and not _is_number(tok[:-1])):
            groups.append((tok[:-1], []))
            continue
        if not groups:
            raise NBestError(f"{where}: feature value {tok!r} before any feature name")
        try:
            groups[-1][1].append(float(tok))
        except ValueError:
            raise NBestError(f"{where}: feature value {tok!r} is not a number") from None
    return groups


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def parse_line(line: str, where: str = "") -> Hypothesis:
    body = line.rstrip("\r\n")
    eol = line[len(body):] or "\n"
    fields = body.split(SEP)
    if len(fields) < 4:
        raise NBestError(f"{where}: expected 'id ||| hypothesis ||| features ||| total', {len(fields)} field(s)")
    try:
        sent = int(fields[0])
    except ValueError:
        raise NBestError(f"{where}: sentence id {fields[0]!r} is not an integer") from None
    try:
        float(fields[3])
    except ValueError:
        raise NBestError(f"{where}: total score {fields[3]!r} is not a number") from None
    return Hypothesis(sent, fields, parse_features(fields[2], where), eol)


def read_nbest(path: str | os.PathLike) -> Iterator[Hypothesis]:
    name = os.fspath(path)
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            yield parse_line(line, f"{name}:{lineno}")


def group_by_sentence(hyps: Iterable[Hypothesis]) -> Iterator[list[Hypothesis]]:
    """Consecutive hypotheses of one sentence (Moses writes them together)."""
    buf: list[Hypothesis] = []
    for h in hyps:
        if buf and h.sent_id != buf[0].sent_id:
            yield buf
            buf = []
        buf.append(h)
    if buf:
        yield buf


def format_value(v: float) -> str:
    return f"{v:.6g}"


def append_feature(h: Hypothesis, name: str, values: list[float]) -> Hypothesis:
    """The hypothesis with ``NAME= v ...`` added at the end of its feature field."""
    fields = list(h.fields)
    body = fields[2].rstrip(" ")
    tail = fields[2][len(body):]
    fields[2] = body + f" {name}= " + " ".join(format_value(v) for v in values) + tail
    return Hypothesis(h.sent_id, fields, h.features + [(name, list(values))], h.eol)


def weighted_total(h: Hypothesis, weights: dict[str, list[float]]) -> float:
    total = 0.0
    for name, vals in h.feature_dict().items():
        w = weights.get(name)
        if w is None:
            raise NBestError(f"no weight for feature {name!r}")
        if len(w) != len(vals):
            raise NBestError(f"feature {name!r} has {len(vals)} values, {len(w)} weights given")
        total += sum(a * b for a, b in zip(w, vals))
    return total


def rerank(hyps: list[Hypothesis], weights: dict[str, list[float]]) -> list[Hypothesis]:
    """A sentence's hypotheses, total score recomputed with ``weights``, best first (stable)."""
    out = []
    for h in hyps:
        fields = list(h.fields)
        fields[3] = format_value(weighted_total(h, weights))
        out.append(Hypothesis(h.sent_id, fields, h.features, h.eol))
    return sorted(out, key=lambda h: -h.total)


def add_feature(path_in: str | os.PathLike, path_out: str | os.PathLike, name: str,
                score: Callable[[list[str]], list[list[float]]], batch_lines: int = 20000) -> int:
    """Copy an n-best list adding ``NAME= values`` to every hypothesis, the values computed by
    ``score`` from the hypotheses' texts in batches; every other byte is kept.  Written to a
    temporary file and renamed into place.  Returns the number of hypotheses."""
    n = 0
    with atomic_write(path_out, "w") as out:
        batch: list[Hypothesis] = []

        def flush() -> None:
            for h, vals in zip(batch, score([h.text for h in batch])):
                out.write(append_feature(h, name, list(vals)).line())
            batch.clear()

        for h in read_nbest(path_in):
            batch.append(h)
            n += 1
            if len(batch) >= batch_lines:
                flush()
        flush()
    return n


def rerank_file(path_in: str | os.PathLike, weights: dict[str, list[float]], best_out: str | os.PathLike,
                nbest_out: str | os.PathLike | None = None, sentences: int | None = None) -> dict:
    """Re-rank every sentence's hypotheses of an n-best list with ``weights`` (``rerank``) and
    write each sentence's best hypothesis to ``best_out``, one line per sentence id from 0 (an
    empty line for an id the list lacks, as up to ``sentences`` when given); with ``nbest_out``,
    the re-ranked list as well.  Outputs are written to temporary files renamed into place."""
    missing: list[int] = []
    n_sent = n_hyp = 0
    with contextlib.ExitStack() as stack:
        best = stack.enter_context(atomic_write(best_out, "w"))
        nb = stack.enter_context(atomic_write(nbest_out, "w")) if nbest_out else None
        expected, lineno = 0, 1
        for group in group_by_sentence(read_nbest(path_in)):
            sid = group[0].sent_id
            if sid < expected:
                raise NBestError(f"{path_in}:{lineno}: sentence {sid} after sentence {expected - 1}: "
                                 "the list is not in sentence order")
            while expected < sid:
                missing.append(expected)
                best.write("\n")
                expected += 1
            try:
                ranked = rerank(group, weights)
            except NBestError as e:
                raise NBestError(f"{path_in}:{lineno}: {e}") from None
            best.write(ranked[0].text + "\n")
            if nb is not None:
                nb.writelines(h.line() for h in ranked)
            lineno += len(group)
            n_sent, n_hyp, expected = n_sent + 1, n_hyp + len(group), sid + 1
        if sentences is not None and expected > sentences:
            raise NBestError(f"{path_in}: sentence ids up to {expected - 1}, but {sentences} sentences were given")
        while sentences is not None and expected < sentences:
            missing.append(expected)
            best.write("\n")
            expected += 1
    return {"sentences": expected, "with_hypotheses": n_sent, "hypotheses": n_hyp, "missing": missing}
