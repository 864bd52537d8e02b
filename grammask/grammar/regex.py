"""Python ``re`` patterns (str) to grammar IR.

The pattern is read by the standard library's own parser (``re._parser``, formerly
``sre_parse``), so the syntax, the inline flags and VERBOSE mode are exactly Python's. The parse
tree is translated with all flags applied (case folding, ``\\d \\w \\s``, ``.``, anchors; see
:mod:`regex_charclass`) into a small tree of our own (:mod:`regex_ast`). Then:

* If the tree holds only characters, sequences, alternatives and repetitions (anchors where
  their truth is fixed by position, e.g. a leading ``^``), it becomes IR directly, counted
  repetitions staying :class:`ir.Repeat` nodes however large.
* Otherwise (lookarounds, ``\\b``, anchors in the middle, and always for the "match"
  semantics, where alternation order and laziness matter) it is compiled into an exact byte
  automaton (:mod:`regex_engine`, :mod:`regex_utf8`) embedded as an :class:`ir.Automaton`.

Backreferences and conditionals are expanded first when their group can only hold a few
strings; possessive repetitions and atomic groups are rewritten when their body has a fixed
width. Anything else raises :class:`GrammarError` naming the construct and its position.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import GrammarError
from . import ir
from . import regex_ast as A
from .regex_charclass import ALL_CHARS, NEWLINE, any_ranges, in_ranges, literal_ranges

try:  # Python >= 3.11
    from re import _constants as C
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

__all__ = ["MAX_REPEAT_SIZE", "SEMANTICS", "regex_to_expr"]

SEMANTICS = ("fullmatch", "match", "search")

#: Largest pattern size accepted, counted as character positions with every counted repetition
#: unrolled (``a{1000}`` counts 1000). The IR keeps repetitions compact; this bounds what the
#: automaton layer may be asked to unroll.
MAX_REPEAT_SIZE = 1_000_000

_ATOMIC_GROUP = getattr(C, "ATOMIC_GROUP", None)
_POSSESSIVE_REPEAT = getattr(C, "POSSESSIVE_REPEAT", None)
_TYPE_FLAGS = C.SRE_FLAG_ASCII | C.SRE_FLAG_LOCALE | C.SRE_FLAG_UNICODE

_CONSTRUCT_OPENERS = {
    "lookahead": ("(?=", "(?!"),
    "lookbehind": ("(?<=", "(?<!"),
    "atomic group": ("(?>",),
    "conditional": ("(?(",),
}


def regex_to_expr(pattern: str, flags: int = 0, *, semantics: str = "fullmatch") -> ir.Expr:
    """Translate a Python regular expression into a grammar IR expression.

    Args:
        pattern: a ``str`` pattern in Python ``re`` syntax.
        flags: ``re`` flags (``re.IGNORECASE``, ``re.DOTALL``...); inline flags work too.
        semantics: which strings the expression describes:
            ``"fullmatch"``: ``{s : re.fullmatch(pattern, s, flags)}``;
            ``"match"``: ``{s nonempty : re.match(pattern, s, flags).end() == len(s)}``, the
            lexemes of a Lark terminal (leftmost-first: alternation order and lazy quantifiers
            decide where a match stops);
            ``"search"``: ``{s : re.search(pattern, s, flags)}``, as JSON Schema ``pattern``.

    Returns:
        An IR expression over UTF-8 text (CharSet/Repeat nodes, or an :class:`ir.Automaton`
        where lookarounds, word boundaries or leftmost-first priority need one).

    Raises:
        GrammarError: the pattern is invalid (the message gives the position), or it uses a
            construct that cannot be compiled exactly (named, with its position).
    """
    if not isinstance(pattern, str):
        raise GrammarError(f"regex pattern must be a str, not {type(pattern).__name__}")
    if semantics not in SEMANTICS:
        raise GrammarError(f"unknown regex semantics {semantics!r}; expected one of {SEMANTICS}")
    flags = int(flags) & ~re.DEBUG  # DEBUG only prints the parse tree
    return _translate(pattern, flags, semantics)


@lru_cache(maxsize=256)
def _translate(pattern: str, flags: int, semantics: str) -> ir.Expr:
    try:
        return _translate_uncached(pattern, flags, semantics)
    except RecursionError:
        raise GrammarError(f"regex {_short(pattern)} is nested too deeply") from None


def _translate_uncached(pattern: str, flags: int, semantics: str) -> ir.Expr:
    tree = _parse(pattern, flags)
    describe = _Describer(pattern)
    root = A.expand_backrefs(tree, describe.generic)
    if A.size(root) > MAX_REPEAT_SIZE:
        raise GrammarError(f"regex {_short(pattern)} is too large: about {A.size(root)} "
                           f"character positions once repetitions are counted "
                           f"(limit {MAX_REPEAT_SIZE})")
    label = f"regex {_short(pattern, 40)}"
    if semantics == "match":
        # Leftmost-first priority involves the whole pattern: one automaton.
        _check_match_lookbehinds(root, describe)
        return _automaton(root, "match", label, describe)
    # fullmatch(A|B) and search(A|B) are the unions over the branches.
    out = []
    for branch in _top_branches(root):
        items = _items(branch) if semantics == "fullmatch" else _search_items(branch)
        out.append(_windowed(items, label, describe))
    return ir.alt(out)


def _automaton(node: A.Node, semantics: str, label: str, describe) -> ir.Expr:
    from .regex_engine import build_dfa
    from .regex_utf8 import to_automaton

    return to_automaton(build_dfa(node, semantics, describe.generic), label)


def _short(pattern: str, limit: int = 60) -> str:
    return repr(pattern if len(pattern) <= limit else pattern[: limit - 3] + "...")


# --------------------------------------------------------------------------- errors


class _Describer:
    """Builds error messages that name a construct and where it is in the pattern."""

    def __init__(self, pattern: str):
        self.pattern = pattern

    def position(self, construct: str) -> int | None:
        for opener in _CONSTRUCT_OPENERS.get(construct, ()):
            i = self.pattern.find(opener)
            if i >= 0:
                return i
        return None

    def at(self, construct: str, detail: str) -> str:
        pos = self.position(construct)
        where = f" at position {pos}" if pos is not None else ""
        return f"regex {_short(self.pattern)}: {detail}{where}"

    def generic(self, detail: str) -> str:
        if "backreference" in detail:
            # The first backreference or conditional (a rough scan: for the message only).
            m = re.search(r"(?<!\\)(?:\\\\)*(\\[1-9]|\(\?P=|\(\?\()", self.pattern)
            where = f" at position {m.start(1)}" if m else ""
            return f"regex {_short(self.pattern)}: {detail}{where}"
        for construct in ("lookbehind", "lookahead", "atomic group"):
            if construct in detail:
                return self.at(construct, detail)
        return f"regex {_short(self.pattern)}: {detail}"


def _parse(pattern: str, flags: int) -> A.Node:
    try:
        # Compiling first reports every error re would (including those found only by the
        # compiler, such as variable-width lookbehind) with its position.
        re.compile(pattern, flags)
        parsed = sre_parse.parse(pattern, flags)
    except re.error as exc:
        pos = exc.pos
        where = ""
        if pos is not None:
            line = pattern.count("\n", 0, pos) + 1
            col = pos - (pattern.rfind("\n", 0, pos) + 1) + 1
            where = f" at position {pos}" + (f" (line {line}, column {col})" if line > 1 else "")
        raise GrammarError(f"invalid regex {_short(pattern)}: {exc.msg}{where}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise GrammarError(f"invalid regex {_short(pattern)}: {exc}") from None
    if parsed.state.flags & C.SRE_FLAG_LOCALE:  # pragma: no cover - refused for str by re
        raise GrammarError(f"regex {_short(pattern)}: the LOCALE flag is not supported")
    try:
        return _Converter(pattern).convert(parsed, parsed.state.flags)
    except RecursionError:
        raise GrammarError(f"regex {_short(pattern)} is nested too deeply") from None


# --------------------------------------------------------------------------- sre tree -> AST


def _combine_flags(flags: int, add: int, remove: int) -> int:
    if add & _TYPE_FLAGS:
        flags &= ~_TYPE_FLAGS
    return (flags | add) & ~remove


class _Converter:
    def __init__(self, pattern: str):
        self.describe = _Describer(pattern)

    def convert(self, sub, flags: int) -> A.Node:
        return A.cat(self.item(op, av, flags) for op, av in sub)

    def item(self, op, av, flags: int) -> A.Node:
        ic = bool(flags & C.SRE_FLAG_IGNORECASE)
        asc = bool(flags & C.SRE_FLAG_ASCII)
        if op is C.LITERAL:
            return A.Chars(literal_ranges(av, ic, asc))
        if op is C.NOT_LITERAL:
            from .regex_charclass import complement

            return A.Chars(complement(literal_ranges(av, ic, asc)))
        if op is C.IN:
            return A.Chars(in_ranges(tuple((o, a) for o, a in av), ic, asc))
        if op is C.ANY:
            return A.Chars(any_ranges(bool(flags & C.SRE_FLAG_DOTALL)))
        if op is C.BRANCH:
            return A.alt(self.convert(branch, flags) for branch in av[1])
        if op is C.SUBPATTERN:
            group, add, remove, body = av[0], av[1], av[2], av[-1]
            inner = self.convert(body, _combine_flags(flags, add, remove))
            return A.Group(group, inner) if group else inner
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, body = av
            item = self.convert(body, flags)
            return A.Repeat(item, lo, None if hi == C.MAXREPEAT else hi, op is C.MIN_REPEAT)
        if _POSSESSIVE_REPEAT is not None and op is _POSSESSIVE_REPEAT:
            lo, hi, body = av
            return self._possessive(self.convert(body, flags), lo,
                                    None if hi == C.MAXREPEAT else hi, "possessive repetition")
        if _ATOMIC_GROUP is not None and op is _ATOMIC_GROUP:
            if len(av) == 1 and av[0][0] in (_ATOMIC_GROUP, _POSSESSIVE_REPEAT):
                return self.item(av[0][0], av[0][1], flags)  # already atomic
            return self._atomic(self.convert(av, flags))
        if op is C.AT:
            return self._anchor(av, flags)
        if op in (C.ASSERT, C.ASSERT_NOT):
            direction, body = av
            item = self.convert(body, flags)
            behind = direction < 0
            return A.Look(item, behind, op is C.ASSERT_NOT)
        if op is C.GROUPREF:
            return A.Backref(av, ic, asc)
        if op is C.GROUPREF_EXISTS:
            group, yes, no = av
            return A.IfGroup(group, self.convert(yes, flags),
                             self.convert(no, flags) if no else A.EMPTY)
        if op is C.FAILURE:  # pragma: no cover - not produced for str patterns today
            return A.FAIL
        raise GrammarError(self.describe.generic(f"unsupported regex construct {op}"))

    def _anchor(self, code, flags: int) -> A.Node:
        ml = bool(flags & C.SRE_FLAG_MULTILINE)
        asc = bool(flags & C.SRE_FLAG_ASCII)
        if code is C.AT_BEGINNING:
            return A.Anchor(A.BOL if ml else A.BOS)
        if code is C.AT_BEGINNING_STRING:
            return A.Anchor(A.BOS)
        if code is C.AT_END:
            return A.Anchor(A.EOL if ml else A.EOS_NL)
        if code is C.AT_END_STRING:
            return A.Anchor(A.EOS)
        if code is C.AT_BOUNDARY:
            return A.Anchor(A.WORDB, asc)
        if code is C.AT_NON_BOUNDARY:
            return A.Anchor(A.NWORDB, asc)
        raise GrammarError(self.describe.generic(f"unsupported anchor {code}"))

    def _possessive(self, item: A.Node, lo: int, hi: int | None, what: str) -> A.Node:
        # With a body of fixed width w >= 1 every iteration ends at a known place, so taking as
        # many iterations as possible and never giving one back is "greedy, then the body must
        # not match again" (unless the maximum was reached).
        w = A.fixed_width(item)
        if not w:
            raise GrammarError(self.describe.at(
                "atomic group", f"{what} whose body has no fixed width cannot be compiled "
                "exactly"))
        stop = A.Look(item, behind=False, negate=True)
        if hi is None:
            return A.Cat((A.Repeat(item, lo, None), stop))
        if hi == lo:
            return A.Repeat(item, lo, hi)
        return A.Alt((A.Repeat(item, hi, hi), A.Cat((A.Repeat(item, lo, hi - 1), stop))))

    def _atomic(self, item: A.Node) -> A.Node:
        # An atomic group commits to its first match. When all matches have the same length
        # the commitment changes nothing; a single repeated fixed-width item is possessive.
        if A.fixed_width(item) is not None:
            return item
        if isinstance(item, A.Group):
            return A.Group(item.index, self._atomic(item.item))
        if isinstance(item, A.Repeat) and A.fixed_width(item.item):
            if item.lazy:
                return A.Repeat(item.item, item.min, item.min)
            return self._possessive(item.item, item.min, item.max, "atomic group")
        raise GrammarError(self.describe.at(
            "atomic group", "atomic group whose matches can have different lengths cannot be "
            "compiled exactly"))


# --------------------------------------------------------------------------- direct translation


class _NeedAutomaton(Exception):
    """The tree needs the automaton construction (raised by the direct translation)."""


_YES, _NO, _MAYBE = "yes", "no", "maybe"


def _direct(node: A.Node, at_start: str, at_end: str) -> ir.Expr:
    """IR for ``node`` when it needs no automaton. ``at_start``/``at_end``: whether the text
    before/after the node is certainly empty (_YES), certainly not (_NO), or either."""
    if isinstance(node, A.Chars):
        return ir.char_ranges(node.ranges) if node.ranges else ir.NOTHING
    if isinstance(node, A.Cat):
        items = node.items
        widths = [A.width(i) for i in items]
        out = []
        for k, item in enumerate(items):
            before = widths[:k]
            after = widths[k + 1:]
            s = _position(at_start, before)
            e = _position(at_end, after)
            out.append(_direct(item, s, e))
        return ir.seq(out)
    if isinstance(node, A.Alt):
        return ir.alt(_direct(i, at_start, at_end) for i in node.items)
    if isinstance(node, A.Group):
        return _direct(node.item, at_start, at_end)
    if isinstance(node, A.Repeat):
        if node.max == 0:
            return ir.EMPTY
        w = A.width(node.item)
        if w[1] == 0 or node.max == 1:
            s, e = at_start, at_end
        else:
            s = _NO if at_start == _NO else _MAYBE
            e = _NO if at_end == _NO else _MAYBE
        if w[1] == 0:
            # An item that consumes nothing: it either matches (then any count works) or not.
            inner = _direct(node.item, s, e)
            return ir.EMPTY if node.min == 0 or inner == ir.EMPTY else inner
        return ir.rep(_direct(node.item, s, e), node.min, node.max)
    if isinstance(node, A.Anchor):
        return _direct_anchor(node.kind, at_start, at_end)
    raise _NeedAutomaton


def _position(edge: str, widths: list) -> str:
    if edge == _NO or any(lo > 0 for lo, _ in widths):
        return _NO
    if edge == _YES and all(hi == 0 for _, hi in widths):
        return _YES
    return _MAYBE


def _direct_anchor(kind: str, at_start: str, at_end: str) -> ir.Expr:
    if kind == A.BOS:
        state = at_start
    elif kind == A.EOS:
        state = at_end
    elif kind in (A.BOL, A.EOL, A.EOS_NL):
        # True at the edge; elsewhere it depends on a neighbouring newline.
        state = at_start if kind == A.BOL else at_end
        if state != _YES:
            raise _NeedAutomaton
    else:
        raise _NeedAutomaton
    if state == _YES:
        return ir.EMPTY
    if state == _NO:
        return ir.NOTHING
    raise _NeedAutomaton


def _ungroup(node: A.Node) -> A.Node:
    while isinstance(node, A.Group):
        node = node.item
    return node


def _top_branches(root: A.Node) -> list:
    node = _ungroup(root)
    return list(node.items) if isinstance(node, A.Alt) else [node]


def _items(node: A.Node) -> list:
    node = _ungroup(node)
    return list(node.items) if isinstance(node, A.Cat) else [node]


_ANY_STAR = A.Repeat(A.Chars(ALL_CHARS), 0, None)
_NEWLINE = A.Chars(NEWLINE)


def _search_items(branch: A.Node) -> list:
    """A top-level branch under ``re.search`` as items spanning the whole string: ``.*``
    before and after, where leading ``^``/``\\A`` drop the prefix, ``(?m)^`` makes it
    ``(.*\\n)?``, a trailing ``\\Z`` drops the suffix, ``$`` makes it ``\\n?`` and ``(?m)$`` makes
    it ``(\\n.*)?``."""
    items = _items(branch)
    start_kinds = set()
    while items and isinstance(items[0], A.Anchor) and items[0].kind in (A.BOS, A.BOL):
        start_kinds.add(items.pop(0).kind)
    end_kinds = set()
    tail: list = []
    while items and isinstance(items[-1], A.Anchor) and items[-1].kind in (
            A.EOS, A.EOS_NL, A.EOL):
        tail.insert(0, items[-1])
        end_kinds.add(items.pop().kind)
    if A.BOS in start_kinds:
        prefix: list = []
    elif A.BOL in start_kinds:
        prefix = [A.Alt((A.EMPTY, A.Cat((_ANY_STAR, _NEWLINE))))]
    else:
        prefix = [_ANY_STAR]
    if A.EOS in end_kinds:
        suffix: list = []  # \Z forces the end, where $ and (?m)$ hold as well
    elif end_kinds == {A.EOS_NL}:
        suffix = [A.Repeat(_NEWLINE, 0, 1)]
    elif end_kinds == {A.EOL}:
        suffix = [A.Alt((A.EMPTY, A.Cat((_NEWLINE, _ANY_STAR))))]
    else:
        suffix = tail + [_ANY_STAR]  # no anchor, or a mixture left to the automaton
    return prefix + items + suffix


_FAR = 1 << 60  # "the whole rest of the string"


def _reach(node: A.Node) -> tuple[int, int]:
    """How many characters before and after its own span an item's assertions may inspect."""
    if isinstance(node, A.Chars):
        return 0, 0
    if isinstance(node, (A.Cat, A.Alt)):
        back = ahead = 0
        for item in node.items:
            b, a = _reach(item)
            back, ahead = max(back, b), max(ahead, a)
        return back, ahead
    if isinstance(node, (A.Repeat, A.Group)):
        return _reach(node.item)
    if isinstance(node, A.Anchor):
        return {A.BOS: (_FAR, 0), A.BOL: (1, 0), A.EOS: (0, _FAR), A.EOS_NL: (0, _FAR),
                A.EOL: (0, 1), A.WORDB: (1, 1), A.NWORDB: (1, 1)}[node.kind]
    if isinstance(node, A.Look):
        b, a = _reach(node.item)
        lo, hi = A.width(node.item)
        if node.behind:
            return min(_FAR, b + lo), a
        return b, (_FAR if hi is None else min(_FAR, hi + a))
    return _FAR, _FAR


def _windowed(items: list, label: str, describe) -> ir.Expr:
    """IR for items that together span the whole string (fullmatch semantics).

    Items that need no automaton become IR directly (repetitions stay compact). Each item that
    does (a lookaround, ``\\b``, an anchor away from the edges) gets an automaton for a window
    of neighbouring items wide enough that everything its assertions inspect lies inside the
    window (or at a real edge of the string), so the window can be compiled on its own.
    """
    n = len(items)
    widths = [A.width(i) for i in items]
    parts: list = [None] * n
    need = []
    for k, item in enumerate(items):
        try:
            parts[k] = _direct(item, _position(_YES, widths[:k]), _position(_YES, widths[k + 1:]))
        except _NeedAutomaton:
            need.append(k)
    if not need:
        return ir.seq(parts)
    reach = [_reach(item) for item in items]

    def extent(k: int) -> tuple[int, int]:
        back, ahead = reach[k]
        a, got = k, 0
        while a > 0 and got < back:
            a -= 1
            got += widths[a][0]
        b, got = k, 0
        while b < n - 1 and got < ahead:
            b += 1
            got += widths[b][0]
        return a, b

    merged: list = []
    for a, b in sorted(extent(k) for k in need):
        if merged and a <= merged[-1][1]:
            merged[-1] = [merged[-1][0], max(b, merged[-1][1])]
        else:
            merged.append([a, b])
    # Every item inside a window (anchors translated directly included) must find what it
    # inspects inside the window too: grow and merge until that holds.
    changed = True
    while changed:
        changed = False
        for w in merged:
            for k in range(w[0], w[1] + 1):
                a, b = extent(k)
                if a < w[0] or b > w[1]:
                    w[0], w[1] = min(a, w[0]), max(b, w[1])
                    changed = True
        merged.sort()
        out_spans: list = []
        for w in merged:
            if out_spans and w[0] <= out_spans[-1][1]:
                out_spans[-1][1] = max(out_spans[-1][1], w[1])
                changed = True
            else:
                out_spans.append(w)
        merged = out_spans
    out: list = []
    k = 0
    for a, b in merged:
        out.extend(parts[k:a])
        out.append(_automaton(A.cat(items[a:b + 1]), "fullmatch", label, describe))
        k = b + 1
    out.extend(parts[k:])
    return ir.seq(out)


# --------------------------------------------------------------------------- match semantics


def _check_match_lookbehinds(root: A.Node, describe: _Describer) -> None:
    """A Lark terminal is matched inside a longer text; a lookbehind that could look before
    the terminal's first character would see text we do not model. Refuse those."""

    def visit(node: A.Node, before: int) -> int:
        """Walk ``node`` with at least ``before`` characters of the terminal before it; return
        the minimum after it."""
        if isinstance(node, A.Cat):
            for item in node.items:
                before = visit(item, before)
            return before
        if isinstance(node, A.Alt):
            return min((visit(i, before) for i in node.items), default=before)
        if isinstance(node, A.Group):
            return visit(node.item, before)
        if isinstance(node, A.Repeat):
            after_one = visit(node.item, before)
            if node.max is None or node.max > 1:
                visit(node.item, after_one)  # later iterations start later
            return before + A.width(node)[0]
        if isinstance(node, A.Look):
            if node.behind:
                width = A.fixed_width(node.item) or 0
                if width > before:
                    raise GrammarError(describe.at(
                        "lookbehind", "lookbehind that can look before the start of the "
                        "terminal (with 'match' semantics the text before a terminal is "
                        "unknown)"))
                visit(node.item, before - width)
            else:
                visit(node.item, before)
            return before
        if isinstance(node, A.IfGroup):
            return min(visit(node.yes, before), visit(node.no, before))
        return before + A.width(node)[0]

    visit(root, 0)
