"""Lowering a code point DFA to a minimal byte DFA (an :class:`ir.Automaton`).

Each code point range becomes a few UTF-8 byte-range sequences; the sequences leaving one
state are merged into a small deterministic byte trie whose inner nodes are shared between
states (same remaining sequences and targets, same node). The result is trimmed to the states
that are reachable and can still accept, and minimized by partition refinement.
"""

from __future__ import annotations

from functools import lru_cache

from .fsm import Dfa, utf8_byte_sequences
from .ir import EMPTY, NOTHING, Automaton, Expr

#: Rounds of Moore refinement tried before handing over to fsm's Hopcroft minimization. Moore is
#: quick on the shallow automata UTF-8 lowering makes; Hopcroft wins on long chains (counted
#: repetitions), where Moore needs one round per chain link.
_MOORE_ROUNDS = 24


@lru_cache(maxsize=65536)
def utf8_sequences(lo: int, hi: int) -> tuple:
    """Byte-range sequences whose products are exactly the UTF-8 encodings of ``[lo, hi]``."""
    return tuple(utf8_byte_sequences(((lo, hi),)))


def _byte_edges(items: list, node_of) -> list:
    """Deterministic byte edges for ``items`` = [(sequence, target)], where ``node_of(rest)``
    names the state reached after the first byte for the remaining ``(sequence, target)`` set."""
    # Sequences of disjoint code point sets have first byte ranges that are equal or disjoint
    # (a range spanning several bytes only comes with complete continuation bytes), so grouping
    # by the first range is enough; the general split below is the fallback.
    groups: dict = {}
    for seq, t in items:
        groups.setdefault(seq[0], []).append((seq, t))
    keys = sorted(groups)
    if all(keys[k][1] < keys[k + 1][0] for k in range(len(keys) - 1)):
        edges = []
        for lo, hi in keys:
            covering = groups[(lo, hi)]
            finals = [t for seq, t in covering if len(seq) == 1]
            if finals:
                dst = node_of(("state", finals[0]))
            else:
                dst = node_of(("node", frozenset((seq[1:], t) for seq, t in covering)))
            if edges and edges[-1][1] + 1 == lo and edges[-1][2] == dst:
                edges[-1] = (edges[-1][0], hi, dst)
            else:
                edges.append((lo, hi, dst))
        return edges
    points = set()
    for seq, _ in items:
        lo, hi = seq[0]
        points.add(lo)
        points.add(hi + 1)
    pts = sorted(points)
    edges = []
    for k in range(len(pts) - 1):
        lo, hi = pts[k], pts[k + 1] - 1
        covering = [(seq, t) for seq, t in items if seq[0][0] <= lo and hi <= seq[0][1]]
        if not covering:
            continue
        finals = [t for seq, t in covering if len(seq) == 1]
        if finals:
            # Distinct targets own disjoint code points, so a complete character has one target.
            dst = ("state", finals[0])
        else:
            dst = ("node", frozenset((seq[1:], t) for seq, t in covering))
        dst = node_of(dst)
        if edges and edges[-1][1] + 1 == lo and edges[-1][2] == dst:
            edges[-1] = (edges[-1][0], hi, dst)
        else:
            edges.append((lo, hi, dst))
    return edges


def lower_to_bytes(cp_dfa) -> tuple[int, list, list]:
    """(start, edges, accepting) of a byte DFA equivalent to the code point DFA."""
    n = len(cp_dfa.edges)
    edges: list = [None] * n
    accepting = list(cp_dfa.accepting)
    inner: dict = {}
    pending: list = []

    def node_of(key) -> int:
        if key[0] == "state":
            return key[1]
        i = inner.get(key[1])
        if i is None:
            i = inner[key[1]] = len(edges)
            edges.append(None)
            accepting.append(False)
            pending.append((i, list(key[1])))
        return i

    for s in range(n):
        items = []
        for ranges, target in cp_dfa.edges[s]:
            for lo, hi in ranges:
                for seq in utf8_sequences(lo, hi):
                    items.append((seq, target))
        edges[s] = _byte_edges(items, node_of) if items else []
    while pending:
        i, items = pending.pop()
        edges[i] = _byte_edges(items, node_of)
    return cp_dfa.start, edges, accepting


def minimize(start: int, edges: list, accepting: list) -> tuple[int, list, list] | None:
    """Trim and minimize a byte DFA; None when its language is empty."""
    result = _moore(start, edges, accepting)
    if result is not None:
        return result
    d = Dfa(start, edges, accepting).minimize()
    if not any(d.accepting):
        return None
    return d.start, d.edges, d.accepting


def _moore(start: int, edges: list, accepting: list):
    """Moore refinement, or None when it needs more than _MOORE_ROUNDS rounds."""
    n = len(edges)
    reach = [False] * n
    reach[start] = True
    stack = [start]
    while stack:
        s = stack.pop()
        for _, _, d in edges[s]:
            if not reach[d]:
                reach[d] = True
                stack.append(d)
    rev: list = [[] for _ in range(n)]
    for s in range(n):
        if reach[s]:
            for _, _, d in edges[s]:
                rev[d].append(s)
    live = [False] * n
    stack = [s for s in range(n) if reach[s] and accepting[s]]
    for s in stack:
        live[s] = True
    while stack:
        s = stack.pop()
        for p in rev[s]:
            if not live[p]:
                live[p] = True
                stack.append(p)
    if not live[start]:
        return 0, [()], [False]
    states = [s for s in range(n) if live[s]]
    trans = {s: [(lo, hi, d) for lo, hi, d in edges[s] if live[d]] for s in states}
    block = {s: (1 if accepting[s] else 0) for s in states}
    count = len(set(block.values()))
    for _ in range(_MOORE_ROUNDS):
        sigs: dict = {}
        new_block = {}
        for s in states:
            sig = [block[s]]
            last = None
            for lo, hi, d in trans[s]:
                b = block[d]
                if last is not None and last[1] + 1 == lo and last[2] == b:
                    last = (last[0], hi, b)
                    sig[-1] = last
                else:
                    last = (lo, hi, b)
                    sig.append(last)
            key = tuple(sig)
            new_block[s] = sigs.setdefault(key, len(sigs))
        block = new_block
        if len(sigs) == count:
            break
        count = len(sigs)
    else:
        return None
    # Renumber with the start state first, in BFS order for readability.
    rep: dict = {}
    for s in states:
        rep.setdefault(block[s], s)
    order = {block[start]: 0}
    queue = [block[start]]
    out_edges: list = []
    out_acc: list = []
    for b in queue:
        s = rep[b]
        row = []
        for lo, hi, d in trans[s]:
            db = block[d]
            if db not in order:
                order[db] = len(order)
                queue.append(db)
            j = order[db]
            if row and row[-1][1] + 1 == lo and row[-1][2] == j:
                row[-1] = (row[-1][0], hi, j)
            else:
                row.append((lo, hi, j))
        out_edges.append(tuple(row))
        out_acc.append(bool(accepting[s]))
    return 0, out_edges, out_acc


def to_automaton(cp_dfa, label: str) -> Expr:
    """The minimal byte automaton of a code point DFA as an IR expression."""
    start, edges, accepting = lower_to_bytes(cp_dfa)
    result = minimize(start, edges, accepting)
    if result is None or not any(result[2]):
        return NOTHING
    start, edges, accepting = result
    if len(edges) == 1 and not edges[0]:
        return EMPTY
    return Automaton(start, tuple(tuple(e) for e in edges), tuple(accepting), label)
