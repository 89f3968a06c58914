"""The `rescorer` program's options: one program whichever way it is started, and one spelling per
role across the commands of both packages."""
import argparse
import ast
import os
import re
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


def test_readme_layout_names_every_module():
    """The README's layout section names each module and script of the three packages (by file
    name, or as bench_*.py, table1*.ini and the like), and no file that is not there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        text = f.read()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("\n## ", 3) if "\n## " in layout[3:] else len(layout)]
    named = set(re.findall(r"[\w*]+\.(?:pyx|py|sh|ini)\b", layout))
    patterns = [re.compile("^" + re.escape(n).replace(r"\*", ".*") + "$") for n in named]
    for package in ("rescorer", "moses_integration", "experiments"):
        files = [f for f in os.listdir(os.path.join(root, package))
                 if f.endswith((".py", ".pyx", ".sh")) and f != "__init__.py"]
        missing = [f for f in files if not any(p.match(f) for p in patterns)]
        assert not missing, f"README's layout does not name {package}/{missing}"
    every = {f for package in ("rescorer", "moses_integration", "experiments")
             for f in os.listdir(os.path.join(root, package))}
    gone = [n for n in named if "*" not in n and n not in every]
    assert not gone, f"README's layout names files that are not there: {gone}"


def _project_imports(root: str) -> dict[str, set[str]]:
    """Each module of the three packages and the project modules it imports (anywhere in it)."""
    packages = ("rescorer", "moses_integration", "experiments")
    modules = {f"{p}.{f[:-3]}": os.path.join(root, p, f) for p in packages
               for f in os.listdir(os.path.join(root, p)) if f.endswith(".py") and f != "__init__.py"}
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        package = name.split(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = f"{package}.{node.module}" if node.level and node.module else package if node.level \
                    else node.module
                deps |= {base} | {f"{base}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_imports_point_one_way_without_cycles():
    """experiments -> moses_integration -> rescorer, never back, and no module imports one that
    imports it back (directly or through others), function-level imports included."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    graph = _project_imports(root)
    floor = {"rescorer": 0, "moses_integration": 1, "experiments": 2}
    upward = [(m, d) for m, ds in graph.items() for d in ds if floor[d.split(".")[0]] > floor[m.split(".")[0]]]
    assert not upward, upward

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in graph[todo.pop()] - seen:
                seen.add(d)
                todo.append(d)
        return seen

    cycles = sorted(m for m in graph if m in reaches(m))
    assert not cycles, f"modules in an import cycle: {cycles}"
