"""Lowering a code point DFA to a byte DFA (an :class:`ir.Automaton`).

The code point DFA is minimized first (:func:`regex_engine.minimize_codepoint_dfa`). Each code
point range then becomes a few UTF-8 byte-range sequences; the sequences leaving one state are
merged into a small deterministic byte trie whose inner nodes are shared between states (same
remaining sequences and targets, same node), which leaves the byte DFA minimal or very nearly so.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from .fsm import utf8_byte_sequences
from .ir import EMPTY, NOTHING, Automaton, Expr


@lru_cache(maxsize=65536)
def utf8_sequences(lo: int, hi: int) -> tuple:
    """Byte-range sequences whose products are exactly the UTF-8 encodings of ``[lo, hi]``."""
    return tuple(utf8_byte_sequences(((lo, hi),)))


# A byte trie "node" is described canonically: the sorted (remaining byte ranges, target slot)
# pairs, with target slots numbered in order of first appearance. The canonical node's edges
# lead to slots or to other canonical nodes (with a slot mapping), and depend only on the
# shape, so they are computed once per process; a concrete byte state is a canonical node plus
# the tuple of real targets for its slots.


class _CanonTable:
    """Process-wide memo of canonical nodes. Replaced (never cleared) when it grows too big,
    so a lowering in progress keeps using the table it started with."""

    LIMIT = 200_000

    def __init__(self):
        self.ids: dict = {}
        self.edges: list = []
        self.shapes: dict = {}
        self.wide: dict = {}


_TABLE = _CanonTable()
_LOCK = threading.Lock()


def _canon(table: _CanonTable, items) -> tuple[int, tuple]:
    """(canonical node id, slots) for ``items`` = [(sequence, symbol)]; ``slots[j]`` is the
    symbol behind canonical slot j."""
    items = sorted(items)
    local: dict = {}
    for _, sym in items:
        local.setdefault(sym, len(local))
    key = tuple((seq, local[sym]) for seq, sym in items)
    cid = table.ids.get(key)
    if cid is None:
        edges = _canon_edges(table, key)
        with _LOCK:
            cid = table.ids.get(key)
            if cid is None:
                cid = table.ids[key] = len(table.edges)
                table.edges.append(edges)
    return cid, tuple(local)


def _canon_edges(table: _CanonTable, items) -> tuple:
    """Edges ``(lo, hi, dst)`` of a canonical node; ``dst`` is ``("slot", j)`` or
    ``("node", cid, slots)`` with ``slots`` naming this node's slots."""
    # Sequences of disjoint code point sets have first byte ranges that are equal or disjoint
    # (a range spanning several bytes only comes with complete continuation bytes).
    groups: dict = {}
    for seq, slot in items:
        groups.setdefault(seq[0], []).append((seq, slot))
    keys = sorted(groups)
    if any(keys[k][1] >= keys[k + 1][0] for k in range(len(keys) - 1)):
        raise AssertionError("overlapping UTF-8 sequences")  # pragma: no cover
    edges: list = []
    for lo, hi in keys:
        covering = groups[(lo, hi)]
        finals = [slot for seq, slot in covering if len(seq) == 1]
        if finals:
            dst: tuple = ("slot", finals[0])
        else:
            cid, slots = _canon(table, [(seq[1:], slot) for seq, slot in covering])
            dst = ("node", cid, slots)
        if edges and edges[-1][1] + 1 == lo and edges[-1][2] == dst:
            edges[-1] = (edges[-1][0], hi, dst)
        else:
            edges.append((lo, hi, dst))
    return tuple(edges)


def _shape(table: _CanonTable, row: list) -> tuple:
    """Canonical node of a code point state's edges ``[(ranges, target)]``; the slots name
    positions in ``row`` sorted by range.

    The ASCII part is one byte per character and cheap; the multi-byte part (often a large
    class such as the rest of ``\\w``) is canonicalized separately and memoized on its own, so
    states that differ only in ASCII edges share it.
    """
    shape = tuple(sorted(ranges for ranges, _ in row))
    hit = table.shapes.get(shape)
    if hit is not None:
        return hit
    ascii_edges = []
    wide = []
    for k, ranges in enumerate(shape):
        for lo, hi in ranges:
            if lo <= 0x7F:
                ascii_edges.append((lo, min(hi, 0x7F), k))
        w = tuple((max(lo, 0x80), hi) for lo, hi in ranges if hi >= 0x80)
        if w:
            wide.append((w, k))
    wide.sort()
    wkey = tuple(w for w, _ in wide)
    whit = table.wide.get(wkey)
    if whit is None:
        items = [(seq, j) for j, w in enumerate(wkey) for lo, hi in w
                 for seq in utf8_sequences(lo, hi)]
        whit = table.wide[wkey] = _canon(table, items) if items else (None, ())
    wcid, wslots = whit
    # Slots of the combined node, numbered in order of first appearance.
    local: dict = {}
    ascii_edges.sort()
    for _, _, k in ascii_edges:
        local.setdefault(k, len(local))
    wide_k = [wide[j][1] for j in wslots]
    for k in wide_k:
        local.setdefault(k, len(local))
    key = ("mix", tuple((lo, hi, local[k]) for lo, hi, k in ascii_edges), wcid,
           tuple(local[k] for k in wide_k))
    cid = table.ids.get(key)
    if cid is None:
        edges = [(lo, hi, ("slot", local[k])) for lo, hi, k in ascii_edges]
        if wcid is not None:
            remap = [local[k] for k in wide_k]
            for lo, hi, dst in table.edges[wcid]:
                if dst[0] == "slot":
                    edges.append((lo, hi, ("slot", remap[dst[1]])))
                else:
                    edges.append((lo, hi, ("node", dst[1], tuple(remap[j] for j in dst[2]))))
        merged: list = []
        for lo, hi, dst in edges:
            if merged and merged[-1][1] + 1 == lo and merged[-1][2] == dst:
                merged[-1] = (merged[-1][0], hi, dst)
            else:
                merged.append((lo, hi, dst))
        with _LOCK:
            cid = table.ids.get(key)
            if cid is None:
                cid = table.ids[key] = len(table.edges)
                table.edges.append(tuple(merged))
    hit = table.shapes[shape] = (cid, tuple(local))
    return hit


def lower_to_bytes(cp_dfa) -> tuple[int, list, list]:
    """(start, edges, accepting) of a byte DFA equivalent to the code point DFA."""
    global _TABLE
    table = _TABLE
    if len(table.edges) > _CanonTable.LIMIT:
        table = _TABLE = _CanonTable()
    canon_edges = table.edges
    n = len(cp_dfa.edges)
    edges: list = [None] * n
    accepting = list(cp_dfa.accepting)
    inner: dict = {}
    pending: list = []

    def instantiate(cid: int, targets: tuple) -> list:
        out = []
        for lo, hi, dst in canon_edges[cid]:
            if dst[0] == "slot":
                t = targets[dst[1]]
            else:
                key = (dst[1], tuple(targets[j] for j in dst[2]))
                t = inner.get(key)
                if t is None:
                    t = inner[key] = len(edges)
                    edges.append(None)
                    accepting.append(False)
                    pending.append((t, key))
            out.append((lo, hi, t))
        return out

    for s in range(n):
        row = cp_dfa.edges[s]
        if not row:
            edges[s] = []
            continue
        cid, slots = _shape(table, row)
        by_shape = sorted(row)
        edges[s] = instantiate(cid, tuple(by_shape[k][1] for k in slots))
    while pending:
        i, (cid, targets) = pending.pop()
        edges[i] = instantiate(cid, targets)
    return cp_dfa.start, edges, accepting


def to_automaton(cp_dfa, label: str) -> Expr:
    """The byte automaton of a code point DFA as an IR expression.

    The code point DFA is minimized first (few states, few edges each); its UTF-8 lowering
    shares inner nodes by their remaining sequences and targets, which leaves it minimal or
    very nearly so, so no byte-level minimization is run.
    """
    from .regex_engine import minimize_codepoint_dfa

    cp_dfa = minimize_codepoint_dfa(cp_dfa)
    if not any(cp_dfa.accepting):
        return NOTHING
    start, edges, accepting = lower_to_bytes(cp_dfa)
    if len(edges) == 1 and not edges[0]:
        return EMPTY
    return Automaton(start, tuple(tuple(e) for e in edges), tuple(accepting), label)
