"""grow-diag-final-and on small alignment matrices worked by hand."""
import random

import pytest

from moses_integration.align import format_points, grow_diag_final_and, parse_points


@pytest.mark.parametrize("ns, nt, fwd, rev, want", [
    # the intersection grows to a diagonal neighbour in the union; a point whose words are both
    # aligned already is not added
    (3, 3, "0-0 1-1 2-2", "0-0 1-2 2-2", "0-0 1-1 2-2"),
    # final-and: a point of one direction whose two words are still unaligned joins; the other
    # direction's point for an aligned word does not
    (3, 3, "0-0 2-1", "0-0 2-2", "0-0 2-1"),
    # neighbours are tried in the order (-1,0) (0,-1) (1,0) (0,1) (-1,-1) (-1,1) (1,-1) (1,1):
    # (1,0) comes before (1,1), and then (1,1)'s words are both aligned
    (3, 2, "0-0 1-0 2-1", "0-0 1-1 2-1", "0-0 1-0 2-1"),
    # a neighbour joins when either of its words is unaligned
    (2, 2, "0-0 1-0", "0-0 1-1", "0-0 1-0 1-1"),
    # nothing in common: only final-and, source-to-target first
    (2, 2, "0-1", "1-1", "0-1"),
])
def test_grow_diag_final_and_worked_examples(ns, nt, fwd, rev, want):
    assert format_points(grow_diag_final_and(ns, nt, parse_points(fwd), parse_points(rev))) == want


def test_result_lies_between_intersection_and_union():
    rnd = random.Random(0)
    for _ in range(200):
        ns, nt = rnd.randint(1, 8), rnd.randint(1, 8)
        fwd = {(rnd.randrange(ns), rnd.randrange(nt)) for _ in range(rnd.randint(0, 10))}
        rev = {(rnd.randrange(ns), rnd.randrange(nt)) for _ in range(rnd.randint(0, 10))}
        a = grow_diag_final_and(ns, nt, fwd, rev)
        assert fwd & rev <= a <= fwd | rev
