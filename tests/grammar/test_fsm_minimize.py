"""DFA minimization: the Numba kernel path gives the Python path's automaton exactly."""

from __future__ import annotations

import pytest

from grammask.grammar import fsm
from grammask.grammar.ir import any_char, rep
from grammask.grammar.regex import regex_to_expr

PATTERNS = [
    r"^(?:\S+\s+){0,9}\S+$",
    r"[a-z]{3,20}@[a-z]+\.(com|org|net)",
    r"(\d{1,3}\.){3}\d{1,3}",
    r"(ab|a)*b(a|b){5}",
    r".{0,30}x",
    r"^[a-zа-я一-龥]+$",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_kernel_and_python_minimization_agree(pattern):
    d = fsm.Dfa.from_expr(regex_to_expr(pattern, semantics="search"))
    for other in (fsm.Dfa.from_expr(rep(any_char(), 0, 40)),
                  fsm.Dfa.from_expr(rep(any_char(), 2, 12)), d.complement()):
        x = d.intersect(other)
        a, b = fsm._minimize_python(x), fsm._minimize_kernel(x)
        assert (a.start, a.edges, a.accepting, a.calls) == (b.start, b.edges, b.accepting, b.calls)


def test_kernel_minimization_honours_the_state_limit():
    d = fsm.Dfa.from_expr(regex_to_expr(r"(\d{1,3}\.){3}\d{1,3}", semantics="fullmatch"))
    big = d.intersect(fsm.Dfa.from_expr(rep(any_char(), 0, 40)))
    assert big.n_states > 20
    with fsm.limits(max_states=10), pytest.raises(Exception, match="too large"):
        fsm._minimize_kernel(big)
