"""What the experiments share: the paper's figures, reading a span of a text file's lines, and
the error of a bad config."""
from __future__ import annotations

from rescorer.text import read_lines as text_lines_of

PAPER = {  # Table 1 of the paper, BLEU on newstest2012+2013 (dev) and newstest2014 (test)
    "Baseline": (30.64, 33.30), "RNN": (31.20, 33.87), "CSLM + RNN": (31.48, 34.64),
    "CSLM + RNN + WP": (31.50, 34.54)}
PAPER_OF = {frozenset(): "Baseline", frozenset({"rnn"}): "RNN", frozenset({"cslm", "rnn"}): "CSLM + RNN",
            frozenset({"cslm", "rnn", "wp"}): "CSLM + RNN + WP"}


class ConfigError(ValueError):
    """A config that cannot be run: the message names the file and the key."""


def read_lines(path: str, span: tuple[int, int] | None = None) -> list[str]:
    """The lines of a text file, or those of ``span`` (first, last: 1-based, inclusive)."""
    lines = text_lines_of(path)
    if span is not None:
        if span[1] > len(lines):
            raise ConfigError(f"{path}: has {len(lines)} lines, the config asks for lines {span[0]}-{span[1]}")
        lines = lines[span[0] - 1:span[1]]
    return lines
