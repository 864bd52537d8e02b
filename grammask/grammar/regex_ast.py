"""The regex front-end's own small syntax tree, between sre's parse tree and the IR.

sre's tree (``re._parser``) is translated into these nodes with all flags applied: every
character test is a set of code point ranges, anchors carry their flag-dependent meaning, and
capturing groups stay only as markers for backreferences. Alternatives keep their order, and
repetitions say whether they are lazy, because the leftmost-first ("match") semantics depends on
both. The analyses here (widths, nullability) and the rewrites (backreference expansion) work on
this tree; :mod:`regex` turns it into IR directly where that is exact, and
:mod:`regex_engine` compiles it to an automaton otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from ..errors import GrammarError

# Anchor kinds (the meaning after flags are applied).
BOS = "\\A"  # start of the string: \A, or ^ without MULTILINE
BOL = "(?m)^"  # start of a line
EOS = "\\Z"  # end of the string
EOS_NL = "$"  # end of the string or before a final newline ($ without MULTILINE)
EOL = "(?m)$"  # end of a line
WORDB = "\\b"
NWORDB = "\\B"


class Node:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Chars(Node):
    """One character from the code point ranges (empty ranges: matches nothing)."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Cat(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt(Node):
    """Ordered alternation: earlier branches have priority."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Repeat(Node):
    item: Node
    min: int
    max: int | None
    lazy: bool = False


@dataclass(frozen=True, slots=True)
class Group(Node):
    """A capturing group (kept for backreferences and conditionals)."""

    index: int
    item: Node


@dataclass(frozen=True, slots=True)
class Look(Node):
    """A lookaround: ``(?=...)``, ``(?!...)``, ``(?<=...)``, ``(?<!...)``."""

    item: Node
    behind: bool
    negate: bool


@dataclass(frozen=True, slots=True)
class Anchor(Node):
    kind: str
    ascii_word: bool = False  # \b and \B: ASCII word characters only


@dataclass(frozen=True, slots=True)
class Backref(Node):
    group: int
    ignorecase: bool
    ascii_only: bool


@dataclass(frozen=True, slots=True)
class IfGroup(Node):
    """``(?(group)yes|no)``"""

    group: int
    yes: Node
    no: Node


EMPTY = Cat(())
FAIL = Chars(())


def cat(items) -> Node:
    flat = []
    for item in items:
        if isinstance(item, Cat):
            flat.extend(item.items)
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else Cat(tuple(flat))


def alt(items) -> Node:
    items = tuple(items)
    return items[0] if len(items) == 1 else Alt(items)


# --------------------------------------------------------------------------- analyses


def width(node: Node) -> tuple[int, int | None]:
    """(min, max) number of characters a match consumes (max None: unbounded)."""
    if isinstance(node, Chars):
        return (1, 1)
    if isinstance(node, Cat):
        lo, hi = 0, 0
        for item in node.items:
            a, b = width(item)
            lo += a
            hi = None if hi is None or b is None else hi + b
        return lo, hi
    if isinstance(node, Alt):
        ws = [width(i) for i in node.items]
        lo = min(w[0] for w in ws)
        hi = None if any(w[1] is None for w in ws) else max(w[1] for w in ws)
        return lo, hi
    if isinstance(node, Repeat):
        a, b = width(node.item)
        hi = 0 if node.max == 0 else (None if b is None or node.max is None else b * node.max)
        if b == 0:
            hi = 0
        return a * node.min, hi
    if isinstance(node, Group):
        return width(node.item)
    if isinstance(node, (Look, Anchor)):
        return (0, 0)
    if isinstance(node, Backref):
        return (0, None)
    if isinstance(node, IfGroup):
        a, b = width(node.yes)
        c, d = width(node.no)
        return min(a, c), (None if b is None or d is None else max(b, d))
    raise TypeError(node)


def fixed_width(node: Node) -> int | None:
    lo, hi = width(node)
    return lo if lo == hi else None


def walk(node: Node):
    """All nodes of the tree, lookaround bodies included (pre-order)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (Cat, Alt)):
            stack.extend(reversed(n.items))
        elif isinstance(n, (Repeat, Group, Look)):
            stack.append(n.item)
        elif isinstance(n, IfGroup):
            stack.extend((n.no, n.yes))


def size(node: Node) -> int:
    """The number of character positions if every repetition were unrolled."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, (Cat, Alt)):
        return sum(size(i) for i in node.items) or 1
    if isinstance(node, Repeat):
        count = node.max if node.max is not None else node.min + 1
        return max(1, size(node.item) * max(count, 1))
    if isinstance(node, (Group, Look)):
        return size(node.item)
    if isinstance(node, IfGroup):
        return size(node.yes) + size(node.no)
    return 1


# --------------------------------------------------------------------------- backreferences

MAX_GROUP_STRINGS = 1024
_UNMATCHED = None


def _finite_strings(node: Node, limit: int) -> list[str] | None:
    """The strings a backreference-free, assertion-free node matches, in sre's priority order.

    None when the language is infinite, too large, or the node holds something else.
    """
    if isinstance(node, Chars):
        n = sum(hi - lo + 1 for lo, hi in node.ranges)
        if n > limit:
            return None
        return [chr(c) for lo, hi in node.ranges for c in range(lo, hi + 1)]
    if isinstance(node, Group):
        return _finite_strings(node.item, limit)
    if isinstance(node, Cat):
        acc = [""]
        for item in node.items:
            part = _finite_strings(item, limit)
            if part is None or len(acc) * len(part) > limit:
                return None
            acc = [a + b for a in acc for b in part]
        return _dedupe(acc)
    if isinstance(node, Alt):
        out: list[str] = []
        for item in node.items:
            part = _finite_strings(item, limit)
            if part is None:
                return None
            out.extend(part)
            if len(out) > limit:
                return None
        return _dedupe(out)
    if isinstance(node, Repeat):
        if node.max is None:
            return None
        if width(node.item)[0] == 0 and node.max > node.min:
            return None  # empty iterations: sre's order is subtle; don't guess
        part = _finite_strings(node.item, limit)
        if part is None:
            return None
        counts = range(node.min, node.max + 1)
        out = []
        for k in reversed(counts) if not node.lazy else counts:
            if len(part) ** k > limit:
                return None
            out.extend("".join(p) for p in product(part, repeat=k))
            if len(out) > limit:
                return None
        return _dedupe(out)
    return None


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def expand_backrefs(root: Node, describe) -> Node:
    """Replace backreferences and conditionals by the finitely many strings their group can hold.

    Exact when the group's language is finite (at most MAX_GROUP_STRINGS strings, and the group
    holds no lookaround or anchor) and every path
    that reaches the reference passes the group exactly once (or, through an optional ``?``,
    at most once). The alternation is placed where the group stands and covers the rest of the
    enclosing sequence, in the group's own priority order, so leftmost-first results are kept.
    ``describe(kind)`` gives the error text for an unsupported case.
    """
    while True:
        target = _first_reference(root)
        if target is None:
            return root
        root = _expand_group(root, target, describe)


def _first_reference(node: Node) -> int | None:
    for n in walk(node):
        if isinstance(n, Backref):
            return n.group
        if isinstance(n, IfGroup):
            return n.group
    return None


def _group_path(node: Node, group: int, path: tuple) -> tuple | None:
    """The chain of nodes from ``node`` down to the Group ``group`` (inclusive)."""
    if isinstance(node, Group) and node.index == group:
        return path + (node,)
    children: tuple = ()
    if isinstance(node, (Cat, Alt)):
        children = node.items
    elif isinstance(node, (Repeat, Group, Look)):
        children = (node.item,)
    elif isinstance(node, IfGroup):
        children = (node.yes, node.no)
    for child in children:
        found = _group_path(child, group, path + (node,))
        if found is not None:
            return found
    return None


def _count_refs(node: Node, group: int) -> int:
    return sum(1 for n in walk(node) if isinstance(n, (Backref, IfGroup)) and n.group == group)


def _expand_group(root: Node, group: int, describe) -> Node:
    path = _group_path(root, group, ())
    if path is None:
        # A reference to a group that never participates: backreferences fail, conditionals
        # take their "no" branch.
        return _substitute(root, group, _UNMATCHED)
    gnode = path[-1]
    strings = _finite_strings(gnode.item, MAX_GROUP_STRINGS)
    if strings is None:
        raise GrammarError(describe(
            "a backreference or conditional to a group whose language is not finite and small "
            f"(at most {MAX_GROUP_STRINGS} strings, no lookarounds or anchors inside)"))
    total = _count_refs(root, group)
    optional = None
    for i in range(len(path) - 2, -1, -1):
        anc, child = path[i], path[i + 1]
        if isinstance(anc, Cat):
            idx = next(k for k, it in enumerate(anc.items) if it is child)
            head = Cat(anc.items[:idx])
            inside = Cat(anc.items[idx:])
            n_head = _count_refs(head, group)
            if n_head + _count_refs(inside, group) == total:
                if n_head and any(isinstance(a, Repeat) and a.max != 1 for a in path[:i]):
                    break  # a reference before the group may see an earlier iteration's value
                new = _expand_in_cat(anc, idx, path[i + 1:], strings, optional, group)
                return _replace_path(root, path[:i], anc, new)
            continue
        if isinstance(anc, Group):
            continue
        if isinstance(anc, Repeat) and anc.min == 0 and anc.max == 1 and optional is None:
            optional = anc
            continue
        break
    raise GrammarError(describe("a backreference or conditional to a group that may be matched "
                                "several times or not at all (inside a repetition, an alternative "
                                "or a lookaround)"))


def _expand_in_cat(cat_node: Cat, idx: int, down: tuple, strings, optional, group) -> Node:
    head = tuple(_substitute(item, group, _UNMATCHED) for item in cat_node.items[:idx])
    rest = cat_node.items[idx + 1:]
    outcomes: list = list(strings)
    if optional is not None:
        outcomes = [_UNMATCHED] + outcomes if optional.lazy else outcomes + [_UNMATCHED]
    branches = []
    for value in outcomes:
        item = _fix_group(down, value, optional)
        branches.append(_substitute(cat((item,) + rest), group, value))
    return cat(head + (alt(branches),))


def _fix_group(down: tuple, value, optional) -> Node:
    """The Cat item on the path ``down`` with the group fixed to ``value`` (None: skipped)."""
    gnode = down[-1]
    if value is _UNMATCHED:
        old, new = optional, EMPTY
        stop = next(k for k, d in enumerate(down) if d is optional)
    else:
        old = gnode
        new = cat(tuple(Chars(((ord(ch), ord(ch)),)) for ch in value))
        stop = len(down) - 1
    for k in range(stop - 1, -1, -1):
        parent = down[k]
        if parent is optional:
            pass  # the optional is taken: it becomes its content
        elif isinstance(parent, Cat):
            new = cat(tuple(new if it is old else it for it in parent.items))
        elif isinstance(parent, Group):
            new = Group(parent.index, new)
        else:  # pragma: no cover - excluded by _expand_group
            raise TypeError(parent)
        old = parent
    return new


def _replace_path(root: Node, above: tuple, old: Node, new: Node) -> Node:
    """Replace ``old`` (reached through the ancestors ``above``) by ``new``."""
    if not above:
        return new
    parent = above[-1]
    if isinstance(parent, (Cat, Alt)):
        items = tuple(new if it is old else it for it in parent.items)
        rebuilt = type(parent)(items)
    elif isinstance(parent, Repeat):
        rebuilt = Repeat(new, parent.min, parent.max, parent.lazy)
    elif isinstance(parent, Group):
        rebuilt = Group(parent.index, new)
    elif isinstance(parent, Look):
        rebuilt = Look(new, parent.behind, parent.negate)
    elif isinstance(parent, IfGroup):
        rebuilt = IfGroup(parent.group, new if parent.yes is old else parent.yes,
                          new if parent.no is old else parent.no)
    else:  # pragma: no cover
        raise TypeError(parent)
    return _replace_path(root, above[:-1], parent, rebuilt)


def _substitute(node: Node, group: int, value) -> Node:
    """Resolve references to ``group`` knowing it holds ``value`` (None: unset)."""
    if isinstance(node, Backref):
        if node.group != group:
            return node
        if value is _UNMATCHED:
            return FAIL
        from .regex_charclass import backref_char_ranges

        return cat(tuple(Chars(backref_char_ranges(ord(ch), node.ignorecase, node.ascii_only))
                         for ch in value))
    if isinstance(node, IfGroup):
        if node.group != group:
            return IfGroup(node.group, _substitute(node.yes, group, value),
                           _substitute(node.no, group, value))
        return _substitute(node.no if value is _UNMATCHED else node.yes, group, value)
    if isinstance(node, (Cat, Alt)):
        return type(node)(tuple(_substitute(i, group, value) for i in node.items))
    if isinstance(node, Repeat):
        return Repeat(_substitute(node.item, group, value), node.min, node.max, node.lazy)
    if isinstance(node, Group):
        return Group(node.index, _substitute(node.item, group, value))
    if isinstance(node, Look):
        return Look(_substitute(node.item, group, value), node.behind, node.negate)
    return node
