"""Numba kernels of the Earley parser over rule DFAs, and the token-trie mask walk.

Data layout (all flat arrays; built in grammask.automata, consumed here):

Grammar blob ``g`` (int32), see :func:`grammar_views` for the header:
    byte_class[256]                  byte -> column of the transition table
    trans[n_states * n_classes]      next state on a byte class, -1 when none
    flags[n_states]                  bit 0 accepting, bit 1 has byte edges, bit 2 has calls
    rule_of[n_states]                rule owning the state
    call_ptr[n_states + 1]           CSR of call edges: call_rule[], call_dst[]
    rule_start[n_rules], nullable[n_rules]

Parser state (one per matcher):
    items  int32[cap, 3]     (dfa state, origin set, next item with the same state in the set)
    sets   int32[max_sets+1] sets[k] = first item of Earley set k; sets[n_sets] = n_items
    dedup  int32[n_states,2] (head item, stamp) to deduplicate items of the set being built
    meta   int64[4]          n_sets, n_items, stamp counter, unused

An Earley set exists per input byte. Items are (state, origin): ``state`` is a state of some
rule's DFA, ``origin`` the set where that rule was predicted. Scanning a byte advances items
along byte edges; the closure predicts called rules (with the Aycock-Horspool shortcut for
nullable rules) and completes finished rules into their callers' sets.

Kernels return status codes instead of raising: OK (1), REJECT (0), or FULL (-1) when a
buffer is too small; the caller grows the buffers and retries.
"""

from __future__ import annotations

import numba as nb
import numpy as np

OK = 1
REJECT = 0
FULL = -1

F_ACCEPT = 1
F_BYTES = 2
F_CALLS = 4

HEADER = 16
# header slots
H_NSTATES, H_NCLASSES, H_NRULES, H_START_RULE = 0, 1, 2, 3
H_TRANS, H_FLAGS, H_RULE_OF, H_CALL_PTR, H_CALL_RULE, H_CALL_DST = 4, 5, 6, 7, 8, 9
H_RULE_START, H_NULLABLE, H_NCALLS, H_SIZE = 10, 11, 12, 13

M_NSETS, M_NITEMS, M_STAMP = 0, 1, 2


def pack_grammar(
    byte_class: np.ndarray,
    trans: np.ndarray,
    flags: np.ndarray,
    rule_of: np.ndarray,
    call_ptr: np.ndarray,
    call_rule: np.ndarray,
    call_dst: np.ndarray,
    rule_start: np.ndarray,
    nullable: np.ndarray,
    start_rule: int,
) -> np.ndarray:
    """Packs the grammar arrays into one int32 blob (one kernel argument instead of ten)."""
    n_states, n_classes = trans.shape
    parts = [byte_class, trans.ravel(), flags, rule_of, call_ptr, call_rule, call_dst,
             rule_start, nullable]
    offsets = []
    pos = HEADER + 256
    for p in parts[1:]:
        offsets.append(pos)
        pos += len(p)
    g = np.zeros(pos, dtype=np.int32)
    g[H_NSTATES] = n_states
    g[H_NCLASSES] = n_classes
    g[H_NRULES] = len(rule_start)
    g[H_START_RULE] = start_rule
    (g[H_TRANS], g[H_FLAGS], g[H_RULE_OF], g[H_CALL_PTR], g[H_CALL_RULE], g[H_CALL_DST],
     g[H_RULE_START], g[H_NULLABLE]) = offsets
    g[H_NCALLS] = len(call_rule)
    g[H_SIZE] = pos
    g[HEADER:HEADER + 256] = byte_class
    for off, p in zip(offsets, parts[1:]):
        g[off:off + len(p)] = p
    return g


@nb.njit(cache=True, nogil=True, inline="always")
def _add(items, dedup, meta, k, state, origin, stamp):
    """Adds (state, origin) to the set being built unless present. Returns FULL when the item
    buffer is full, else OK."""
    if dedup[state, 1] == stamp:
        j = dedup[state, 0]
        while j >= 0:
            if items[j, 1] == origin:
                return OK
            j = items[j, 2]
        head = dedup[state, 0]
    else:
        head = -1
    n = meta[M_NITEMS]
    if n >= items.shape[0]:
        return FULL
    items[n, 0] = state
    items[n, 1] = origin
    items[n, 2] = head
    dedup[state, 0] = n
    dedup[state, 1] = stamp
    meta[M_NITEMS] = n + 1
    return OK


@nb.njit(cache=True, nogil=True)
def _next_stamp(dedup, meta):
    s = meta[M_STAMP] + 1
    if s >= 2_000_000_000:
        dedup[:, 1] = -1
        s = 1
    meta[M_STAMP] = s
    return s


@nb.njit(cache=True, nogil=True)
def _closure(g, items, sets, dedup, meta, k, stamp):
    """Completes Earley set ``k`` (its scanned items are already in place)."""
    call_ptr_o = g[H_CALL_PTR]
    call_rule_o = g[H_CALL_RULE]
    call_dst_o = g[H_CALL_DST]
    flags_o = g[H_FLAGS]
    rule_of_o = g[H_RULE_OF]
    rule_start_o = g[H_RULE_START]
    nullable_o = g[H_NULLABLE]
    j = sets[k]
    while j < meta[M_NITEMS]:
        s = items[j, 0]
        o = items[j, 1]
        j += 1
        f = g[flags_o + s]
        if f & F_CALLS:
            for e in range(g[call_ptr_o + s], g[call_ptr_o + s + 1]):
                r = g[call_rule_o + e]
                if _add(items, dedup, meta, k, g[rule_start_o + r], k, stamp) == FULL:
                    return FULL
                if g[nullable_o + r] != 0:
                    if _add(items, dedup, meta, k, g[call_dst_o + e], o, stamp) == FULL:
                        return FULL
        if (f & F_ACCEPT) and o != k:
            r = g[rule_of_o + s]
            for m in range(sets[o], sets[o + 1]):
                s2 = items[m, 0]
                if g[flags_o + s2] & F_CALLS:
                    for e in range(g[call_ptr_o + s2], g[call_ptr_o + s2 + 1]):
                        if g[call_rule_o + e] == r:
                            if _add(items, dedup, meta, k, g[call_dst_o + e], items[m, 1],
                                    stamp) == FULL:
                                return FULL
    return OK


@nb.njit(cache=True, nogil=True)
def init_state(g, items, sets, dedup, meta):
    """Resets the parser to the initial Earley set. Returns OK or FULL."""
    meta[M_NSETS] = 0
    meta[M_NITEMS] = 0
    if sets.shape[0] < 2:
        return FULL
    sets[0] = 0
    stamp = _next_stamp(dedup, meta)
    start_rule = g[H_START_RULE]
    if _add(items, dedup, meta, 0, g[g[H_RULE_START] + start_rule], 0, stamp) == FULL:
        return FULL
    if _closure(g, items, sets, dedup, meta, 0, stamp) == FULL:
        return FULL
    meta[M_NSETS] = 1
    sets[1] = meta[M_NITEMS]
    return OK


@nb.njit(cache=True, nogil=True)
def push_byte(g, items, sets, dedup, meta, b):
    """Scans byte ``b`` into a new Earley set. REJECT leaves the state unchanged."""
    k = meta[M_NSETS]
    if k + 1 >= sets.shape[0]:
        return FULL
    start = sets[k]
    stamp = _next_stamp(dedup, meta)
    n_classes = g[H_NCLASSES]
    trans_o = g[H_TRANS]
    flags_o = g[H_FLAGS]
    c = g[HEADER + b]
    for m in range(sets[k - 1], start):
        s = items[m, 0]
        if g[flags_o + s] & F_BYTES:
            t = g[trans_o + s * n_classes + c]
            if t >= 0:
                if _add(items, dedup, meta, k, t, items[m, 1], stamp) == FULL:
                    meta[M_NITEMS] = start
                    return FULL
    if meta[M_NITEMS] == start:
        return REJECT
    if _closure(g, items, sets, dedup, meta, k, stamp) == FULL:
        meta[M_NITEMS] = start
        return FULL
    meta[M_NSETS] = k + 1
    sets[k + 1] = meta[M_NITEMS]
    return OK


@nb.njit(cache=True, nogil=True, inline="always")
def pop_to(sets, meta, n_sets):
    """Drops the sets after the first ``n_sets``."""
    meta[M_NSETS] = n_sets
    meta[M_NITEMS] = sets[n_sets]


@nb.njit(cache=True, nogil=True)
def can_end(g, items, sets, meta):
    """Whether the input so far is a complete sentence of the grammar."""
    k = meta[M_NSETS] - 1
    flags_o = g[H_FLAGS]
    rule_of_o = g[H_RULE_OF]
    start_rule = g[H_START_RULE]
    for m in range(sets[k], sets[k + 1]):
        s = items[m, 0]
        if items[m, 1] == 0 and (g[flags_o + s] & F_ACCEPT) and g[rule_of_o + s] == start_rule:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def push_bytes(g, items, sets, dedup, meta, data):
    """Scans all of ``data``; on REJECT or FULL the state is restored to what it was."""
    base = meta[M_NSETS]
    for i in range(data.shape[0]):
        r = push_byte(g, items, sets, dedup, meta, data[i])
        if r != OK:
            pop_to(sets, meta, base)
            return r
    return OK


@nb.njit(cache=True, nogil=True)
def next_byte_classes(g, items, sets, meta, out):
    """Marks in ``out[class]`` every byte class some item of the last set can scan."""
    k = meta[M_NSETS] - 1
    n_classes = g[H_NCLASSES]
    trans_o = g[H_TRANS]
    flags_o = g[H_FLAGS]
    out[:] = 0
    for m in range(sets[k], sets[k + 1]):
        s = items[m, 0]
        if g[flags_o + s] & F_BYTES:
            base = trans_o + s * n_classes
            for c in range(n_classes):
                if g[base + c] >= 0:
                    out[c] = 1


@nb.njit(cache=True, nogil=True)
def jump_forward(g, items, sets, dedup, meta, out):
    """Writes into ``out`` the bytes the grammar forces next (while exactly one byte is
    possible and the input cannot end). Returns the count (or FULL); the state is left as
    it was."""
    base = meta[M_NSETS]
    n_classes = g[H_NCLASSES]
    classes = np.zeros(n_classes, dtype=np.int8)
    n = 0
    status = 0
    while n < out.shape[0]:
        if can_end(g, items, sets, meta):
            break
        next_byte_classes(g, items, sets, meta, classes)
        only = -1
        count = 0
        for b in range(256):
            if classes[g[HEADER + b]]:
                count += 1
                only = b
                if count > 1:
                    break
        if count != 1:
            break
        r = push_byte(g, items, sets, dedup, meta, only)
        if r != OK:
            status = r
            break
        out[n] = only
        n += 1
    pop_to(sets, meta, base)
    if status == FULL:
        return FULL
    return n


@nb.njit(cache=True, nogil=True)
def fill_mask(g, items, sets, dedup, meta, tok_bytes, tok_ptr, sorted_ids, lcp, skip,
              stop_ids, mask_row):
    """Writes the allowed-token bitmask of the current parser state into ``mask_row``.

    Tokens are visited in byte order; a prefix shared with the previous token is not
    rescanned, and a prefix the parser rejects skips every token that extends it
    (``skip[tok_ptr[i] + d]`` is the next token that does not share ``d + 1`` bytes with
    token ``i``). Returns OK or FULL; the parser state is unchanged on return.
    """
    base = meta[M_NSETS]
    mask_row[:] = 0
    n = sorted_ids.shape[0]
    pushed = 0
    i = 0
    status = OK
    while i < n:
        common = lcp[i]
        if common > pushed:
            common = pushed
        if common < pushed:
            pop_to(sets, meta, base + common)
            pushed = common
        p = tok_ptr[i]
        length = tok_ptr[i + 1] - p
        ok = True
        while pushed < length:
            r = push_byte(g, items, sets, dedup, meta, tok_bytes[p + pushed])
            if r == OK:
                pushed += 1
            else:
                if r == FULL:
                    status = FULL
                    i = n
                ok = False
                break
        if not ok:
            if status == FULL:
                break
            i = skip[p + pushed]
            continue
        t = sorted_ids[i]
        mask_row[t >> 5] |= np.int32(1) << np.int32(t & 31)
        i += 1
    pop_to(sets, meta, base)
    if status == OK and can_end(g, items, sets, meta):
        for t in stop_ids:
            mask_row[t >> 5] |= np.int32(1) << np.int32(t & 31)
    return status
