"""The paper's Table 2: for a source phrase, its best target phrases by the phrase table and by
the RNN Encoder-Decoder, side by side, with both scores on every row.

The table's score is a column of its dense scores, by default the third, p(target | source)
(``phi(e|f)`` in Moses's naming, the paper's ``p(f|e)`` with f the French target); the RNN's
is ``log p(target | source)`` of the network.  The table is read once for a whole list of
source phrases.  A source phrase the table does not hold still gets the RNN's side: the
phrases the network generates by itself (``generate.beam_search``).
"""
from __future__ import annotations

from tqdm import tqdm
import os
from dataclasses import dataclass, field

from .generate import beam_search
from .phrase_table import SEP, parse_line, raw_lines
from .scorer import PhraseScorer

TABLE_COLUMN = 2  # p(target | source) in Moses's score order phi(f|e) lex(f|e) phi(e|f) lex(e|f)


@dataclass
class Row:
    target: str
    table: float | None      # the table's probability (None: not in the table)
    rnn: float               # log p(target | source) under the network
    unknown: int = 0         # target words outside the network's shortlist (each scored as [UNK])


@dataclass
class PhraseList:
    source: str
    in_table: bool
    n_targets: int
    by_table: list[Row] = field(default_factory=list)
    by_rnn: list[Row] = field(default_factory=list)
    unknown_words: list[str] = field(default_factory=list)   # shown as [UNK] to the network


def read_targets(table: str | os.PathLike, sources: list[str], column: int = TABLE_COLUMN,
                 progress: bool = True) -> dict[str, list[tuple[str, float]]]:
    """(target, score in ``column``) of every line of the table whose source is in ``sources``."""
    wanted = {s.encode("utf-8") for s in sources}
    out: dict[str, list[tuple[str, float]]] = {s: [] for s in sources}
    path = os.fspath(table)
    for lineno, raw in tqdm(raw_lines(path), desc=f"reading {os.path.basename(path)}", unit=" lines",
                            unit_scale=True, mininterval=2.0, disable=not progress, leave=False):
        k = raw.find(SEP)
        if k < 0 or raw[:k] not in wanted:
            continue
        pair = parse_line(raw, path, lineno)
        scores = pair.fields[2].split()
        if column >= len(scores):
            raise ValueError(f"{path}:{lineno}: {len(scores)} scores, no column {column + 1}")
        out[pair.source].append((pair.target, float(scores[column])))
    return out


def compare(scorer: PhraseScorer, table: str | os.PathLike, sources: list[str], k: int = 10,
            column: int = TABLE_COLUMN, progress: bool = True, beam: int = 10,
            known_targets: bool = False) -> list[PhraseList]:
    """One ``PhraseList`` per source phrase (in the order given, duplicates kept once).  With
    ``known_targets`` the RNN's ranking leaves out targets with words outside the target
    shortlist: the network scores each such word as the class [UNK], so they all share the
    class's probability (what the WP feature counts) and would crowd the ranking."""
    sources = list(dict.fromkeys(" ".join(s.split()) for s in sources))
    if any(not s for s in sources):
        raise ValueError("an empty source phrase has no translations: give at least one word")
    targets = read_targets(table, sources, column, progress)
    out = []
    for s in sources:
        cands = targets[s]
        unknown = [w for w in s.split() if w not in scorer.src_vocab.index]
        pl = PhraseList(s, bool(cands), len(cands), unknown_words=unknown)
        if cands:
            rnn = scorer.score_pairs([(s, t) for t, _ in cands])
            tv = scorer.tgt_vocab
            rows = [Row(t, p, r, tv.n_unknown(t.split())) for (t, p), r in zip(cands, rnn)]
            pl.by_table = sorted(rows, key=lambda x: -x.table)[:k]
            pl.by_rnn = sorted((r for r in rows if not (known_targets and r.unknown)), key=lambda x: -x.rnn)[:k]
        else:
            ids = scorer.src_vocab.ids(s.split())
            gen = beam_search(scorer.model, scorer.tgt_vocab, ids, beam=max(beam, k), n=k)
            pl.by_rnn = [Row(" ".join(g.words), None, g.logprob) for g in gen]
        out.append(pl)
    return out


def _shown(source: str, pl: PhraseList) -> str:
    return " ".join("[UNK]" if w in pl.unknown_words else w for w in source.split())


def _target(r: Row) -> str:
    return r.target + (" †" if r.unknown else "")


def format_markdown(lists: list[PhraseList], column: int = TABLE_COLUMN) -> str:
    """A Markdown section per source: the table's top-k beside the RNN's, both scores on each row
    († marks a target with words outside the network's shortlist)."""
    out = []
    for pl in lists:
        head = f"### {pl.source}"
        if pl.unknown_words:
            head += f" (the network reads: {_shown(pl.source, pl)})"
        out.append(head)
        out.append("")
        if not pl.in_table:
            out.append("Not in the phrase table; the network's own phrases (beam search):")
            out.append("")
            out.append("| RNN generates | log p |")
            out.append("|---|---|")
            out += [f"| {r.target or '(empty phrase)'} | {r.rnn:.2f} |" for r in pl.by_rnn]
        else:
            out.append(f"{pl.n_targets} target phrases in the table; † marks targets with words outside the "
                       "network's shortlist (scored as [UNK]).")
            out.append("")
            out.append(f"| by the table (column {column + 1}) | p | RNN log p | | by the RNN | RNN log p | p |")
            out.append("|---|---|---|---|---|---|---|")
            for i in range(max(len(pl.by_table), len(pl.by_rnn))):
                a = pl.by_table[i] if i < len(pl.by_table) else None
                b = pl.by_rnn[i] if i < len(pl.by_rnn) else None
                left = f"{_target(a)} | {a.table:.3g} | {a.rnn:.2f}" if a else " | | "
                right = f"{_target(b)} | {b.rnn:.2f} | {b.table:.3g}" if b else " | | "
                out.append(f"| {left} | | {right} |")
        out.append("")
    return "\n".join(out)


def format_tsv(lists: list[PhraseList]) -> str:
    """One row per (source, ranking, rank): source, ranking (table|rnn|generated), rank, target,
    table probability (empty when not in the table), RNN log-probability, target words outside
    the network's shortlist."""
    rows = ["source\tranking\trank\ttarget\ttable_p\trnn_logp\tunknown_words"]
    for pl in lists:
        for name, lst in (("table", pl.by_table), ("rnn" if pl.in_table else "generated", pl.by_rnn)):
            for i, r in enumerate(lst, 1):
                tp = "" if r.table is None else f"{r.table:.6g}"
                rows.append(f"{pl.source}\t{name}\t{i}\t{r.target}\t{tp}\t{r.rnn:.4f}\t{r.unknown}")
    return "\n".join(rows) + "\n"

