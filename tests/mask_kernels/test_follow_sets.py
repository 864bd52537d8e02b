"""Follow sets of rules (the bytes that can come right after a rule completes), computed by the
kernel ``follow_sets``, against a plain-Python fixpoint over the same tables and against sets
worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

import grammask as gm
from grammask.mask_kernels import earley as E
from grammask.mask_kernels import mask_cache as MC

from ..automata.test_matcher import VOCAB


def _python_follow(g: np.ndarray) -> np.ndarray:
    """The same definition as the kernel, written as set algebra over Python ints."""
    n_states = int(g[E.H_NDENSE])
    n_classes = int(g[E.H_NCLASSES])
    n_rules = int(g[E.H_NRULES])
    n_calls = int(g[E.H_NCALLS])

    def seg(h, n):
        return [int(x) for x in g[g[h]:g[h] + n]]

    flags = seg(E.H_FLAGS, n_states)
    rule_of = seg(E.H_RULE_OF, n_states)
    call_ptr = seg(E.H_CALL_PTR, n_states + 1)
    call_rule = seg(E.H_CALL_RULE, n_calls)
    call_dst = seg(E.H_CALL_DST, n_calls)
    rule_start = seg(E.H_RULE_START, n_rules)
    nullable = seg(E.H_NULLABLE, n_rules)
    class_bytes = [0] * n_classes
    for b in range(256):
        class_bytes[int(g[E.HEADER + b])] |= 1 << b

    def own(q):
        return sum(class_bytes[c] for c in range(n_classes) if E.step(g, q, c) >= 0)

    first = {q: own(q) for q in set(call_dst) | set(rule_start)}
    ends = {q: bool(E.state_flags(g, q) & E.F_ACCEPT) for q in first}
    changed = True
    while changed:
        changed = False
        for q in first:
            if q >= n_states:
                continue
            f, e = first[q], ends[q]
            for k in range(call_ptr[q], call_ptr[q + 1]):
                f |= first[rule_start[call_rule[k]]]
                if nullable[call_rule[k]]:
                    f |= first[call_dst[k]]
                    e = e or ends[call_dst[k]]
            if (f, e) != (first[q], ends[q]):
                first[q], ends[q] = f, e
                changed = True
    follow = [0] * n_rules
    changed = True
    while changed:
        changed = False
        for q in range(n_states):
            if not flags[q] & E.F_CALLS:
                continue
            for k in range(call_ptr[q], call_ptr[q + 1]):
                r, d = call_rule[k], call_dst[k]
                f = follow[r] | first[d] | (follow[rule_of[q]] if ends[d] else 0)
                if f != follow[r]:
                    follow[r] = f
                    changed = True
    return np.array([[(f >> b) & 1 for b in range(256)] for f in follow], dtype=bool)


LARK = {
    "nullable chain": r"""
        start: a b "z"
        a: "x" c |
        c: "(" a ")" d
        d: "y"?
        b: ("," a)*
    """,
    "right recursion": r"""
        start: list
        list: item ("," list)?
        item: "[" list? "]" | /[0-9]+/
    """,
    "ends through nullable calls": r"""
        start: s "!"
        s: "t" u v | "(" s ")"
        u: "u" u |
        v: "v" v | w
        w: "w" w |
    """,
}

SCHEMAS = {
    "nested": {"type": "object", "properties": {
        "a": {"type": "array", "items": {"$ref": "#"}},
        "b": {"type": "string", "maxLength": 300},
        "c": {"anyOf": [{"type": "number"}, {"type": "null"}]}}},
    "long strings": {"type": "array", "items": {"type": "string", "minLength": 40,
                                                "maxLength": 500}},
}


def _compile(kind: str, src):
    compiler = gm.GrammarCompiler(VOCAB, cache_enabled=False)
    if kind == "lark":
        return compiler.compile_grammar(src)
    return compiler.compile_json_schema(src)


@pytest.mark.parametrize("kind,name", [("lark", n) for n in LARK] +
                         [("schema", n) for n in SCHEMAS])
def test_kernel_equals_python_fixpoint(kind, name):
    compiled = _compile(kind, LARK[name] if kind == "lark" else SCHEMAS[name])
    g = compiled.automata.blob
    np.testing.assert_array_equal(MC.follow_sets(g), _python_follow(g))


def test_builtin_json_grammar():
    compiler = gm.GrammarCompiler(VOCAB, cache_enabled=False)
    g = compiler.compile_builtin_json_grammar().automata.blob
    np.testing.assert_array_equal(MC.follow_sets(g), _python_follow(g))


def test_follow_sets_by_hand():
    compiled = _compile("lark", LARK["ends through nullable calls"])
    auto = compiled.automata
    assert {"s", "u", "v", "w"} <= set(auto.rule_names)  # recursive: kept as rules
    follow = MC.follow_sets(auto.blob)

    def bytes_after(rule):
        return {chr(b) for b in np.flatnonzero(follow[auto.rule_names.index(rule)])}

    # u is followed by v's first bytes, w's (v can start with w), or, all nullable, what
    # follows s
    assert bytes_after("u") == set("vw!)")
    assert bytes_after("v") == set("!)")
    assert bytes_after("w") == set("!)")
    assert bytes_after("s") == set("!)")
    assert bytes_after("start") == set()
