"""Grammar front-ends: text (Lark, GBNF, regex, JSON Schema) in, :class:`Grammar` IR out.

:func:`parse_grammar` is the one entry point for grammar text; it picks the syntax. The
helpers below it are shared by the front-ends: error excerpts that point at a line and
column, and the shortest-string analysis that finds empty languages (and that
:mod:`grammask.testing` uses to make deep random draws terminate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import GrammarError
from .ir import (
    Alt,
    Automaton,
    ByteSet,
    CharSet,
    Empty,
    Expr,
    Grammar,
    Literal,
    Nothing,
    Ref,
    Repeat,
    Seq,
)

__all__ = ["Grammar", "parse_grammar"]

# A GBNF rule definition: a name of letters, digits, '-' or '_' followed by '::=' at the start
# of a line. Lark has no '::=' outside of string literals and regexes, which never start a line.
_GBNF_RULE = re.compile(r"^[ \t]*[A-Za-z0-9_-]+[ \t]*::=", re.MULTILINE)


def parse_grammar(text: str, *, syntax: str = "auto", start: str | None = None) -> Grammar:
    """Parse grammar text into the IR.

    Args:
        text: the grammar.
        syntax: ``"lark"`` (Lark's EBNF, see :func:`grammask.grammar.ebnf.grammar_from_lark`),
            ``"gbnf"`` (llama.cpp's format, see :func:`grammask.grammar.gbnf.grammar_from_gbnf`)
            or ``"auto"``: GBNF when some line defines a rule with ``::=``, else Lark.
        start: the start rule; by default ``start`` for Lark and ``root`` for GBNF.

    Returns:
        The :class:`Grammar`.

    Raises:
        GrammarError: malformed text (with line and column), an undefined rule or start rule,
            or a start rule whose language is empty.
    """
    if not isinstance(text, str):
        raise TypeError(f"grammar text must be str, not {type(text).__name__}")
    if syntax == "auto":
        syntax = "gbnf" if _GBNF_RULE.search(text) else "lark"
    if syntax == "lark":
        from .ebnf import grammar_from_lark

        return grammar_from_lark(text, start=start)
    if syntax == "gbnf":
        from .gbnf import grammar_from_gbnf

        return grammar_from_gbnf(text, start=start)
    raise ValueError(f"syntax must be 'auto', 'lark' or 'gbnf', not {syntax!r}")


# --------------------------------------------------------------------------- error messages


def source_excerpt(text: str, line: int, column: int) -> str:
    """The source line ``line`` (1-based) with a caret under ``column`` (1-based)."""
    lines = text.splitlines() or [""]
    if not 1 <= line <= len(lines):
        return ""
    src = lines[line - 1].expandtabs(1)
    return f"\n    {src}\n    {' ' * (max(column, 1) - 1)}^"


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset into ``text``."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


# --------------------------------------------------------------------------- shortest strings


def shortest_lengths(grammar: Grammar) -> dict[str, int | None]:
    """Length in bytes of the shortest string of every rule (``None``: the rule derives none).

    A least fixpoint over the rules: each round re-evaluates every body with the previous
    round's lengths, until nothing shrinks.
    """
    return _length_table(grammar)[0]


def _length_table(grammar: Grammar) -> tuple[dict[str, int | None], dict[str, int]]:
    """Shortest lengths and, for each productive rule, its *rank*: the round in which its
    length became final. A shortest derivation of a rule of rank k only needs rules of rank
    < k, which is what lets :mod:`grammask.testing` build one without looping."""
    rules = grammar.rules
    lengths: dict[str, int | None] = {name: None for name in rules}
    ranks: dict[str, int] = {}
    automaton_cache: dict[int, int | None] = {}
    changed = True
    rnd = 0
    while changed:
        changed = False
        rnd += 1
        new = {name: min_length(body, lengths, automaton_cache) for name, body in rules.items()}
        for name, value in new.items():
            old = lengths[name]
            if value is not None and (old is None or value < old):
                lengths[name] = value
                ranks[name] = rnd
                changed = True
    return lengths, ranks


def min_length(
    expr: Expr, lengths: Mapping[str, int | None], automaton_cache: dict | None = None
) -> int | None:
    """Shortest string length of ``expr`` given the rules' lengths (``None``: no string)."""
    if isinstance(expr, Empty):
        return 0
    if isinstance(expr, Nothing):
        return None
    if isinstance(expr, Literal):
        return len(expr.data)
    if isinstance(expr, ByteSet):
        return 1
    if isinstance(expr, CharSet):
        return len(chr(expr.ranges[0][0]).encode("utf-8"))
    if isinstance(expr, Seq):
        total = 0
        for item in expr.items:
            n = min_length(item, lengths, automaton_cache)
            if n is None:
                return None
            total += n
        return total
    if isinstance(expr, Alt):
        best = None
        for item in expr.items:
            n = min_length(item, lengths, automaton_cache)
            if n is not None and (best is None or n < best):
                best = n
        return best
    if isinstance(expr, Repeat):
        if expr.min == 0:
            return 0
        n = min_length(expr.item, lengths, automaton_cache)
        return None if n is None else n * expr.min
    if isinstance(expr, Ref):
        if expr.name not in lengths:
            raise GrammarError(f"rule {expr.name!r} is used but not defined")
        return lengths[expr.name]
    if isinstance(expr, Automaton):
        cache = automaton_cache if automaton_cache is not None else {}
        key = id(expr)
        if key not in cache:
            shortest = automaton_shortest(expr)
            cache[key] = None if shortest is None else len(shortest)
        return cache[key]
    raise TypeError(f"not an IR expression: {expr!r}")


def automaton_shortest(a: Automaton) -> bytes | None:
    """A shortest accepted byte string of an automaton (smallest bytes first), or None."""
    parent: dict[int, tuple[int, int] | None] = {a.start: None}
    frontier = [a.start]
    while frontier:
        nxt = []
        for s in frontier:
            if a.accepting[s]:
                out = []
                while parent[s] is not None:
                    s, b = parent[s]
                    out.append(b)
                return bytes(reversed(out))
            for lo, _hi, dst in a.edges[s]:
                if dst not in parent:
                    parent[dst] = (s, lo)
                    nxt.append(dst)
        frontier = nxt
    return None


def check_grammar(grammar: Grammar, describe_start: str = "start rule") -> Grammar:
    """Raise :class:`GrammarError` when a rule is referenced but not defined, or when the
    start rule derives no string at all. Returns ``grammar``."""
    for name, body in grammar.rules.items():
        _check_refs(body, grammar.rules, name)
    lengths = shortest_lengths(grammar)
    if lengths[grammar.start] is None:
        raise GrammarError(
            f"the {describe_start} {grammar.start!r} derives no finite string: "
            "its language is empty (every derivation recurses forever or uses an empty set)"
        )
    return grammar


def _check_refs(expr: Expr, rules: Mapping[str, Expr], owner: str) -> None:
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Ref):
            if e.name not in rules:
                raise GrammarError(f"rule {e.name!r} is used in {owner!r} but not defined")
        elif isinstance(e, (Seq, Alt)):
            stack.extend(e.items)
        elif isinstance(e, Repeat):
            stack.append(e.item)
