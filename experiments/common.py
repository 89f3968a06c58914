"""What the experiments share: the paper's figures, reading a span of a text file's lines, Markdown
tables, a report directory written from one results structure, the error of a bad config, the stages
that cut a table and make shortlists, and the options every experiment script has."""
from __future__ import annotations

import argparse
import configparser
import contextlib
import gzip
import itertools
import json
import logging
import os
from typing import Callable

from moses_integration import stages as S
from rescorer.fileio import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")  # the data beside the project

PAPER = {  # Table 1 of the paper, BLEU on newstest2012+2013 (dev) and newstest2014 (test)
    "Baseline": (30.64, 33.30), "RNN": (31.20, 33.87), "CSLM + RNN": (31.48, 34.64),
    "CSLM + RNN + WP": (31.50, 34.54)}
PAPER_OF = {frozenset(): "Baseline", frozenset({"rnn"}): "RNN", frozenset({"cslm", "rnn"}): "CSLM + RNN",
            frozenset({"cslm", "rnn", "wp"}): "CSLM + RNN + WP"}


def markdown_table(header: list[str], rows, align: str | None = None) -> list[str]:
    """A Markdown table's lines: the header, its rule (``align``: ``l`` or ``r`` per column, left
    by default) and one line per row. Cells are written as given: a ``|`` inside one must be
    escaped (``\\|``)."""
    def line(cells) -> str:
        return "|" + "|".join(f" {c} " if str(c) != "" else " " for c in cells) + "|"
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in (align or "l" * len(header)))
    return [line(header), rule] + [line(row) for row in rows]


def write_results(out: str, results: dict, render: Callable[[dict], str],
                  plots: Callable[[dict, str], None] | None = None, default: Callable | None = str) -> str:
    """A report directory from one results structure: ``results.json`` (``default`` turns what JSON
    does not know into something it does), the figures ``plots(results, out)`` draws, and
    ``results.md`` rendered from the structure by ``render``, each file written through a temporary
    one; returns the Markdown."""
    os.makedirs(out, exist_ok=True)
    with atomic_write(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=default)
    if plots is not None:
        plots(results, out)
    text = render(results)
    with atomic_write(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    return text


class ConfigError(ValueError):
    """A config that cannot be run: the message names the file and the key."""


def read_lines(path: str, span: tuple[int, int] | None = None) -> list[str]:
    """The lines of a text file, or those of ``span`` (first, last: 1-based, inclusive)."""
    # imported here: bench_train.py runs this module beside the rescorer package of an older
    # commit (today's trainer), which has no text module
    from rescorer.text import read_lines as text_lines_of
    lines = text_lines_of(path)
    if span is not None:
        if span[1] > len(lines):
            raise ConfigError(f"{path}: has {len(lines)} lines, the config asks for lines {span[0]}-{span[1]}")
        lines = lines[span[0] - 1:span[1]]
    return lines


def head_stage(source: str, out: str, lines: int) -> S.Stage:
    """The first ``lines`` lines of a phrase table, gzipped (a small experiment's table)."""
    def run():
        from rescorer.phrase_table import open_binary  # imported here, as read_lines's import above
        with open_binary(source) as f, atomic_write(out, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as g:
            for line in itertools.islice(f, lines):
                g.write(line)
        return {"lines": lines}
    return S.Stage("table", [source], [out], run, {"lines": lines}, isolated=False)


def vocab_stage(table: str, vocab_dir: str, size: int) -> S.Stage:
    """``rescorer vocab``: the ``size`` most frequent words of each side of ``table``."""
    def run():
        from rescorer.cli import main  # here, not above: the command line loads every command's module
        if main(["vocab", "-q", "--phrase-table", table, "--size", str(size), "--output", vocab_dir,
                 "--overwrite"]) != 0:
            raise RuntimeError(f"rescorer vocab failed on {table}")
        return {"size": size}
    return S.Stage("vocab", [table], [os.path.join(vocab_dir, f"{side}.vocab") for side in ("source", "target")],
                   run, {"size": size})


def data_dir(*given: str | None) -> str:
    """The data directory, absolute: the first of ``given`` that is set (a --data option, a
    config's key), else $RESCORER_DATA, else the shared data beside the project."""
    for d in given:
        if d:
            return os.path.abspath(d)
    return os.path.abspath(os.environ.get("RESCORER_DATA") or SHARED_DATA)


def read_config(path: str) -> configparser.ConfigParser:
    """An experiment's config file, its keys and section names as written (system names keep
    their case), ``#`` starting a comment anywhere, no interpolation."""
    cp = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
    cp.optionxform = str
    if not cp.read(path):
        raise ConfigError(f"{path}: no such config file")
    return cp


def arguments(doc: str, config: str, report_only: bool = True) -> argparse.ArgumentParser:
    """The options of an experiment script: its config, the data, work and report directories,
    --force, --report-only, -q, and the hidden ones by which each stage runs in its own process."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=config)
    ap.add_argument("--data", help="data directory (default: the config's if it names one, else $RESCORER_DATA, "
                                   "else ../shared/data)")
    ap.add_argument("--work", help="work directory (default: the config's)")
    ap.add_argument("--report", help="report directory (default: the config's)")
    ap.add_argument("--force", action="store_true", help="run every stage again")
    if report_only:
        ap.add_argument("--report-only", action="store_true",
                        help="run no stage: write the report from the stages done so far (an interim report "
                             "while a run goes on, which lists what is still pending)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    S.add_stage_arguments(ap)
    return ap


def stage_records(stages, work: str, a: argparse.Namespace, run) -> list[dict]:
    """The stage records a report is written from: with ``--report-only`` the state of each of
    ``stages()`` (nothing runs; called only then, as an experiment may make its system first in
    ``run``), else those of ``run(force)``."""
    if getattr(a, "report_only", False):
        if a.force:
            raise ConfigError("--report-only runs no stage: it cannot be combined with --force")
        return S.stage_status(stages(), work)
    return run(a.force)


@contextlib.contextmanager
def errors_exit(log: logging.Logger):
    """An experiment's errors (which name the file and line) as one logged line and exit status 1."""
    try:
        yield
    except (ValueError, OSError, RuntimeError) as e:
        log.error("%s", e)
        raise SystemExit(1)
