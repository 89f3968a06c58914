"""The `rescorer` program's options: one program whichever way it is started, and one spelling per
role across the commands of both packages."""
import argparse
import os
import subprocess
import sys

import pytest

from moses_integration import cli as moses_cli
from rescorer import cli as rescorer_cli


def _parser():
    return rescorer_cli.build_parser(rescorer_cli.register, moses_cli.register)


def _commands(p, prefix=()):
    """Every (command path, parser), nested ones (``ini set-table``) included."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _commands(sub, prefix + (name,))


def test_every_file_written_or_read_has_the_common_spelling_first():
    """What a command writes is --output, its main input --input; the older spellings (--out,
    --out-ini, --hyp, --text) are kept as aliases of them."""
    seen = set()
    for path, sub in _commands(_parser()):
        for action in sub._actions:
            old = {"--out", "--out-ini"} & set(action.option_strings)
            if old:
                assert action.option_strings[0] == "--output", path
                seen |= old
            old = {"--hyp", "--text"} & set(action.option_strings)
            if old:
                assert action.option_strings[0] == "--input", path
                seen |= old
    assert seen == {"--out", "--out-ini", "--hyp", "--text"}


@pytest.mark.parametrize("args, dest", [
    (["score", "--phrase-table", "pt.gz", "--model", "m.pt", "{}", "o.gz"], "out"),
    (["tune", "--ini", "i", "--input", "dev.en", "--ref", "dev.fr", "{}", "t.ini"], "out_ini"),
    (["cslm-train", "{}", "a.gz", "--vocab", "v", "--output", "run"], "text"),
])
def test_old_and_new_spellings_parse_the_same(args, dest):
    p = _parser()
    values = []
    spellings = {"out": ("--output", "--out"), "out_ini": ("--output", "--out-ini"), "text": ("--input", "--text")}
    for s in spellings[dest]:
        a = p.parse_args([s if x == "{}" else x for x in args])
        values.append(getattr(a, dest))
    assert values[0] == values[1] and values[0] is not None


def test_the_program_has_every_command_of_both_packages():
    full = {path for path, _ in _commands(rescorer_cli.build_parser(*rescorer_cli.registrars()))}
    assert full == {path for path, _ in _commands(_parser())}
    assert {("train",), ("score",), ("tune",), ("decode",), ("ini", "set-table")} <= full


def test_both_entry_points_offer_the_same_commands_and_options():
    """``rescorer`` (the console script) and ``python -m rescorer`` (what torchrun starts)."""
    script = os.path.join(os.path.dirname(sys.executable), "rescorer")
    for args in (["--help"], ["train", "--help"], ["tune", "--help"]):
        a = subprocess.run([script, *args], capture_output=True, text=True)
        b = subprocess.run([sys.executable, "-m", "rescorer", *args], capture_output=True, text=True)
        assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
        assert a.stdout == b.stdout, args
