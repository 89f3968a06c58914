"""How the RNN-gain study names its points: a network's budget ('62k'), a point ('whole-500@62k'),
and whether two points' settings are the same (a point measured by an earlier report is kept
when they are).  Shared by ``rnn_gain.py`` and its report."""
from __future__ import annotations

import json

from experiments.common import ConfigError

BASELINE = "Baseline"


def same_settings(a, b) -> bool:
    """Whether two settings structures are equal as JSON stores them."""
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def budget_text(updates: int) -> str:
    """62000 -> '62k' (a budget as points and files name it)."""
    return f"{updates // 1000}k" if updates % 1000 == 0 else str(updates)


def parse_budget(text: str) -> int:
    """'62k' or '62000' -> 62000; ValueError otherwise."""
    t = text.strip().lower()
    n = int(t[:-1]) * 1000 if t.endswith("k") else int(t)
    if n <= 0:
        raise ValueError(text)
    return n


def point_name(net: str, updates: int) -> str:
    """'whole-500', 62000 -> 'whole-500@62k'"""
    return f"{net}@{budget_text(updates)}"


def parse_point(text: str, networks: dict, where: str) -> tuple[str, int]:
    """'NET@UPDATES' of a known network and one of its budgets."""
    net, at, u = text.partition("@")
    if net not in networks:
        raise ConfigError(f"{where}: {text!r}: no [network {net}] (networks: {', '.join(networks)})")
    try:
        updates = parse_budget(u)
    except ValueError:
        raise ConfigError(f"{where}: {text!r}: expected NETWORK@UPDATES, e.g. {net}@"
                          f"{budget_text(networks[net]['updates'][-1])}") from None
    if updates not in networks[net]["updates"]:
        raise ConfigError(f"{where}: {text!r}: {net} is trained to "
                          f"{', '.join(budget_text(x) for x in networks[net]['updates'])} updates only")
    return net, updates
