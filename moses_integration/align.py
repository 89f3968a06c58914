"""Word alignment: eflomal in both directions, symmetrised with grow-diag-final-and.

``eflomal_align`` runs eflomal (Östling and Tiedemann, 2016; PyPI ``eflomal``) once, which
samples both directions; both link files use source-target order (``i-j``).

``grow_diag_final_and`` is Koehn's heuristic as the Moses manual gives it and
``symal -alignment=grow -diagonal=yes -final=yes -both=yes`` computes it:

1. start from the intersection of the two directions;
2. grow-diag: repeatedly, for each aligned point (in order of target word, then source word)
   and each of its 8 neighbours ((-1,0), (0,-1), (1,0), (0,1), (-1,-1), (-1,1), (1,-1),
   (1,1)), add the neighbour if it is in the union and its source or its target word is
   still unaligned; until nothing is added;
3. final-and: for each direction in turn (source-to-target, then target-to-source), add
   its points whose source and target words are both still unaligned.
"""
from __future__ import annotations

import os
import tempfile

import eflomal

from rescorer.fileio import atomic_write

from .pipes import open_text

Point = tuple[int, int]  # (source index, target index)

NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def grow_diag_final_and(n_src: int, n_tgt: int, fwd: set[Point], rev: set[Point]) -> set[Point]:
    union = fwd | rev
    a = set(fwd & rev)
    src_aligned = {i for i, _ in a}
    tgt_aligned = {j for _, j in a}

    def add(i: int, j: int) -> None:
        a.add((i, j))
        src_aligned.add(i)
        tgt_aligned.add(j)

    added = True
    while added:  # grow-diag
        added = False
        for j in range(n_tgt):
            for i in range(n_src):
                if (i, j) not in a:
                    continue
                for di, dj in NEIGHBOURS:
                    ni, nj = i + di, j + dj
                    if (ni not in src_aligned or nj not in tgt_aligned) and (ni, nj) in union and (ni, nj) not in a:
                        add(ni, nj)
                        added = True
    for direction in (fwd, rev):  # final-and
        for j in range(n_tgt):
            for i in range(n_src):
                if (i, j) in direction and i not in src_aligned and j not in tgt_aligned:
                    add(i, j)
    return a


def format_points(points: set[Point]) -> str:
    return " ".join(f"{i}-{j}" for i, j in sorted(points))


def parse_points(line: str) -> set[Point]:
    out = set()
    for tok in line.split():
        a, _, b = tok.partition("-")
        out.add((int(a), int(b)))
    return out


def eflomal_align(src_path: str, tgt_path: str, out_path: str, model: int = 3, n_samplers: int = 2,
                  progress: bool = True) -> int:
    """Align a tokenised corpus with eflomal in both directions and write the grow-diag-final-and
    symmetrisation (Pharaoh ``i-j``, one line per sentence pair).  Returns the number of lines.
    eflomal samples: two runs give slightly different alignments (it has no seed option).
    With ``progress``, eflomal reports its sampling iterations on stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        fwd_path, rev_path = os.path.join(tmp, "fwd"), os.path.join(tmp, "rev")
        with open_text(src_path) as s, open_text(tgt_path) as t:
            eflomal.Aligner(model=model, n_samplers=n_samplers).align(
                s, t, links_filename_fwd=fwd_path, links_filename_rev=rev_path, quiet=not progress)
        n = 0
        with open_text(src_path) as s, open_text(tgt_path) as t, open(fwd_path) as f, open(rev_path) as r, \
                atomic_write(out_path, "w") as out:
            for ls, lt, lf, lr in zip(s, t, f, r):
                out.write(format_points(grow_diag_final_and(len(ls.split()), len(lt.split()), parse_points(lf),
                                                            parse_points(lr))) + "\n")
                n += 1
    return n
