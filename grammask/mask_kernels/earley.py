"""Numba kernels of the Earley parser over rule DFAs, and the token-trie mask walk.

Data layout (all flat arrays; built in grammask.automata, consumed here):

Grammar blob ``g`` (int32), header slots ``H_*``, then:
    byte_class[256]                  byte -> column of the transition table
    trans[n_dense * n_classes]       next state on a byte class, -1 when none
    flags[n_dense]                   bit 0 accepting, bit 1 has byte edges, bit 2 has calls
    rule_of[n_dense]                 rule owning the state
    call_ptr[n_dense + 1]            CSR of call edges: call_rule[], call_dst[]
    rule_start[n_rules], nullable[n_rules]
    blocks[n_blocks * BLOCK_ROW]     counter blocks (below) and their inner tables

Counter blocks: a rule ``X{m,n}`` with a large count and a prefix-free ``X`` is not unrolled.
Its states are *virtual*: state ``base + c * qq + i`` is "c copies of X done, inner DFA state
i" (qq inner states, X's final state folded into the start of the next copy), and transitions
are computed from X's small DFA. States below ``n_dense`` are ordinary table states; every
kernel reads states through :func:`state_flags`, :func:`state_rule`, :func:`step` and
:func:`call_state`.

Runs: a bounded run of bytes inside a rule's DFA (JSON's whitespace, ``[ \t\n\r]{0,20}``,
between every two tokens) is a block with a *continuation*: a table state ``T`` (row slot
B_CONT, -1 for counter blocks). Its virtual state ``base + c`` is "c bytes of the run read,
then T": a run byte leads to ``base + c + 1`` while ``c < n``, any other byte goes where T's
does; it accepts, and calls rules, as T does, in T's rule. The table state before the run
leads to ``base + 1`` on the run's bytes. Each run would otherwise be n + 1 table states
wherever it is used: most states of an object's DFA.

Parser state (one per matcher):
    items  int32[cap, 3]     (dfa state, origin set, next item with the same state in the set)
    sets   int32[max_sets+1] sets[k] = first item of Earley set k; sets[n_sets] = n_items
    htab   int32[2^k, 3]     open-addressing table (state, stamp, head item) htablicating the
                             items of the set being built; a new stamp per set empties it
    meta   int64[4]          n_sets, n_items, stamp counter, first item of the set being built

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

HEADER = 24
# header slots
H_NSTATES, H_NCLASSES, H_NRULES, H_START_RULE = 0, 1, 2, 3
H_TRANS, H_FLAGS, H_RULE_OF, H_CALL_PTR, H_CALL_RULE, H_CALL_DST = 4, 5, 6, 7, 8, 9
H_RULE_START, H_NULLABLE, H_NCALLS, H_SIZE = 10, 11, 12, 13
H_NDENSE, H_NBLOCKS, H_BLOCKS = 14, 15, 16
# counter blocks (rows first), first state of the run blocks (rows after them), and the
# states per run block when all have the same bound (0: they differ)
H_NCBLOCKS, H_RUN_BASE, H_RUN_STRIDE = 17, 18, 19

# block rows: base state, inner states, min, max, inner start, inner table offset, rule,
# unbounded flag, has-bytes offset, continuation (runs: the table state after the run; -1)
BLOCK_ROW = 10
B_BASE, B_QQ, B_MIN, B_MAX, B_I0, B_INNER, B_RULE, B_UNBOUNDED, B_HASBYTES, B_CONT = range(10)
INNER_FINAL = -2

#: Largest number of virtual states all counter blocks of one grammar may have.
MAX_VIRTUAL_STATES = 1 << 30

M_NSETS, M_NITEMS, M_STAMP, M_SETSTART = 0, 1, 2, 3


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
    blocks: list | None = None,
    runs: tuple | None = None,
) -> np.ndarray:
    """Packs the grammar arrays into one int32 blob (one kernel argument instead of ten).

    ``blocks`` lists counter blocks as ``(rule, m, n, unbounded, i0, inner, has_bytes)``:
    ``inner`` is X's table over the grammar's byte classes, int32[qq, n_classes], holding a
    next inner state, -1, or INNER_FINAL when X is complete. Their rules' ``rule_start`` and
    ``nullable`` entries are filled in here.

    ``runs`` (see above) is ``(src, run, dst, bounds, run_bytes)``: the run edges (state
    before, run index, state after), each run's bound and its bytes (bool[n_runs, 256]).
    Their blocks, one per (run, state after), are numbered after the counter blocks; the
    states before are led into them here (``trans`` and ``flags`` are not changed in place).
    """
    n_dense, n_classes = trans.shape
    blocks = blocks or []
    rule_start = np.array(rule_start, dtype=np.int32)
    nullable = np.array(nullable, dtype=np.int32)
    rows = []
    extra = []
    base = n_dense
    for rule, m, n, unbounded, i0, inner, has_bytes in blocks:
        qq = inner.shape[0]
        count = (int(n) + 1) * qq
        if base + count > MAX_VIRTUAL_STATES:
            raise OverflowError(f"repetition bound {n} too large")
        rows.append([base, qq, m, n, i0, 0, rule, int(bool(unbounded)), 0, -1])
        extra.append((np.asarray(inner, dtype=np.int32).ravel(),
                      np.asarray(has_bytes, dtype=np.int32)))
        rule_start[rule] = base + i0
        nullable[rule] = int(m == 0)
        base += count
    run_inner = np.zeros((0, n_classes), dtype=np.int32)
    run_rows = np.zeros((0, 5), dtype=np.int64)
    run_end = base
    if runs is not None:
        src, run, dst, bounds, run_bytes = runs
        trans = trans.copy()
        flags = flags.copy()
        run_inner, run_rows = run_blocks(trans, flags, rule_of, byte_class, src, run, dst,
                                         np.asarray(bounds, dtype=np.int64), run_bytes, base)
        run_end = int(run_rows[-1, 4] + run_rows[-1, 1] + 1)
        if run_end > MAX_VIRTUAL_STATES:
            raise OverflowError("too many run states")
    n_blocks = len(rows) + len(run_rows)
    parts = [byte_class, trans.ravel(), flags, rule_of, call_ptr, call_rule, call_dst,
             rule_start, nullable, np.zeros(n_blocks * BLOCK_ROW, dtype=np.int32)]
    offsets = []
    pos = HEADER + 256
    for p in parts[1:]:
        offsets.append(pos)
        pos += len(p)
    for j, (inner, has_bytes) in enumerate(extra):
        rows[j][B_INNER] = pos
        pos += len(inner)
        rows[j][B_HASBYTES] = pos
        pos += len(has_bytes)
    run_inner_off = pos
    if len(run_rows):
        pos += run_inner.size + 1  # the runs' inner rows, then one has-bytes flag for all
    g = np.zeros(pos, dtype=np.int32)
    g[H_NSTATES] = run_end
    g[H_NDENSE] = n_dense
    g[H_NCLASSES] = n_classes
    g[H_NRULES] = len(rule_start)
    g[H_START_RULE] = start_rule
    (g[H_TRANS], g[H_FLAGS], g[H_RULE_OF], g[H_CALL_PTR], g[H_CALL_RULE], g[H_CALL_DST],
     g[H_RULE_START], g[H_NULLABLE], g[H_BLOCKS]) = offsets
    g[H_NBLOCKS] = n_blocks
    g[H_NCBLOCKS] = len(rows)
    g[H_RUN_BASE] = base
    run_bounds = np.unique(run_rows[:, 1])
    g[H_RUN_STRIDE] = int(run_bounds[0]) + 1 if len(run_bounds) == 1 else 0
    g[H_NCALLS] = len(call_rule)
    g[H_SIZE] = pos
    g[HEADER:HEADER + 256] = byte_class
    for off, p in zip(offsets, parts[1:]):
        g[off:off + len(p)] = p
    for j, row in enumerate(rows):
        g[g[H_BLOCKS] + j * BLOCK_ROW: g[H_BLOCKS] + (j + 1) * BLOCK_ROW] = row
        inner, has_bytes = extra[j]
        g[row[B_INNER]:row[B_INNER] + len(inner)] = inner
        g[row[B_HASBYTES]:row[B_HASBYTES] + len(has_bytes)] = has_bytes
    if len(run_rows):
        g[run_inner_off:run_inner_off + run_inner.size] = run_inner.ravel()
        g[pos - 1] = 1
        table = g[g[H_BLOCKS] + len(rows) * BLOCK_ROW:
                  g[H_BLOCKS] + n_blocks * BLOCK_ROW].reshape(-1, BLOCK_ROW)
        table[:, B_BASE] = run_rows[:, 4]
        table[:, B_QQ] = 1
        table[:, B_MAX] = run_rows[:, 1]
        table[:, B_INNER] = run_inner_off + run_rows[:, 0] * n_classes
        table[:, B_RULE] = run_rows[:, 2]
        table[:, B_HASBYTES] = pos - 1
        table[:, B_CONT] = run_rows[:, 3]
    return g


@nb.njit(cache=True, nogil=True)
def run_blocks(trans, flags, rule_of, byte_class, src, run, dst, run_max, run_bytes, first):
    """The run blocks of a grammar's tables: one per (run, state after it), in that order,
    their virtual states numbered from ``first`` (a block of bound n has n + 1, count 0 never
    used). Leads each state before a run into its block's state "one byte read" on the run's
    classes (``trans`` and ``flags`` are changed). Returns (inner int32[n_runs, n_classes]:
    INNER_FINAL on each run's classes, else -1; rows int64[n_blocks, 5]: run, bound, rule,
    state after, first state)."""
    n, k = trans.shape
    n_runs = run_bytes.shape[0]
    inner = np.full((n_runs, k), -1, dtype=np.int32)
    for j in range(n_runs):
        for b in range(256):
            if run_bytes[j, b]:
                inner[j, byte_class[b]] = INNER_FINAL
    m = src.shape[0]
    key = np.empty(m, dtype=np.int64)
    for e in range(m):
        key[e] = run[e] * n + dst[e]
    order = np.argsort(key, kind="mergesort")
    block = np.empty(m, dtype=np.int64)
    n_blocks = 0
    for i in range(m):
        e = order[i]
        if i == 0 or key[e] != key[order[i - 1]]:
            n_blocks += 1
        block[e] = n_blocks - 1
    rows = np.empty((n_blocks, 5), dtype=np.int64)
    nxt = first
    for i in range(m):
        e = order[i]
        b = block[e]
        if i == 0 or key[e] != key[order[i - 1]]:
            rows[b, 0] = run[e]
            rows[b, 1] = run_max[run[e]]
            rows[b, 2] = rule_of[dst[e]]
            rows[b, 3] = dst[e]
            rows[b, 4] = nxt
            nxt += run_max[run[e]] + 1
    for e in range(m):
        s = src[e]
        for c in range(k):
            if inner[run[e], c] == INNER_FINAL:
                trans[s, c] = rows[block[e], 4] + 1
        flags[s] |= F_BYTES
    return inner, rows


# --------------------------------------------------------------------------- state access


@nb.njit(cache=True, nogil=True)
def block_of(g, s):
    """Offset in ``g`` of the row of the block (counter block or run) holding virtual state
    ``s``: a division when the runs have one bound, else a binary search among the counter
    blocks or among the runs."""
    bo = g[H_BLOCKS]
    run_base = g[H_RUN_BASE]
    if s < run_base:
        lo = 0
        hi = g[H_NCBLOCKS] - 1
    else:
        stride = g[H_RUN_STRIDE]
        if stride > 0:
            return bo + (g[H_NCBLOCKS] + (s - run_base) // stride) * BLOCK_ROW
        lo = g[H_NCBLOCKS]
        hi = g[H_NBLOCKS] - 1
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if g[bo + mid * BLOCK_ROW + B_BASE] <= s:
            lo = mid
        else:
            hi = mid - 1
    return bo + lo * BLOCK_ROW


@nb.njit(cache=True, nogil=True, inline="always")
def state_flags(g, s):
    if s < g[H_NDENSE]:
        return g[g[H_FLAGS] + s]
    b = block_of(g, s)
    t = g[b + B_CONT]
    if t >= 0:  # a run: T's flags, and the run's bytes while there is room
        f = g[g[H_FLAGS] + t]
        if s - g[b + B_BASE] < g[b + B_MAX]:
            f |= F_BYTES
        return f
    qq = g[b + B_QQ]
    rel = s - g[b + B_BASE]
    c = rel // qq
    i = rel - c * qq
    f = 0
    if (c < g[b + B_MAX] or g[b + B_UNBOUNDED]) and g[g[b + B_HASBYTES] + i]:
        f |= F_BYTES
    if i == g[b + B_I0] and c >= g[b + B_MIN]:
        f |= F_ACCEPT
    return f


@nb.njit(cache=True, nogil=True, inline="always")
def state_rule(g, s):
    if s < g[H_NDENSE]:
        return g[g[H_RULE_OF] + s]
    return g[block_of(g, s) + B_RULE]


@nb.njit(cache=True, nogil=True, inline="always")
def step(g, s, cls):
    """The state after scanning a byte of class ``cls`` from ``s`` (-1: none)."""
    if s < g[H_NDENSE]:
        return g[g[H_TRANS] + s * g[H_NCLASSES] + cls]
    b = block_of(g, s)
    qq = g[b + B_QQ]
    base = g[b + B_BASE]
    cont = g[b + B_CONT]
    if cont >= 0:  # a run
        if g[g[b + B_INNER] + cls] != INNER_FINAL:
            return g[g[H_TRANS] + cont * g[H_NCLASSES] + cls]
        if s - base >= g[b + B_MAX]:
            return -1
        return s + 1
    rel = s - base
    c = rel // qq
    i = rel - c * qq
    n = g[b + B_MAX]
    if c >= n and not g[b + B_UNBOUNDED]:
        return -1
    j = g[g[b + B_INNER] + i * g[H_NCLASSES] + cls]
    if j == INNER_FINAL:
        c1 = c + 1
        if c1 > n:  # unbounded: "at least n" saturates
            c1 = n
        return base + c1 * qq + g[b + B_I0]
    if j < 0:
        return -1
    return base + c * qq + j


@nb.njit(cache=True, nogil=True, inline="always")
def call_state(g, s):
    """The table state whose call edges ``s`` has: itself, a run's continuation, or -1 (a
    counter block's states call nothing)."""
    if s < g[H_NDENSE]:
        return s
    if s < g[H_RUN_BASE]:  # a counter block's
        return -1
    return g[block_of(g, s) + B_CONT]


@nb.njit(cache=True, nogil=True, inline="always")
def _add(items, htab, meta, k, state, origin, stamp):
    """Adds (state, origin) to the set being built unless present. Returns FULL when the item
    buffer or the hash table is full, else OK."""
    mask = htab.shape[0] - 1
    h = (state * 0x9E3779B1) & mask
    while True:
        if htab[h, 1] != stamp:
            break
        if htab[h, 0] == state:
            j = htab[h, 2]
            while j >= 0:
                if items[j, 1] == origin:
                    return OK
                j = items[j, 2]
            break
        h = (h + 1) & mask
    n = meta[M_NITEMS]
    if n >= items.shape[0]:
        return FULL
    if htab[h, 1] != stamp:
        if 2 * (n - meta[M_SETSTART]) >= htab.shape[0]:
            return FULL
        htab[h, 0] = state
        htab[h, 1] = stamp
        htab[h, 2] = -1
    items[n, 0] = state
    items[n, 1] = origin
    items[n, 2] = htab[h, 2]
    htab[h, 2] = n
    meta[M_NITEMS] = n + 1
    return OK


@nb.njit(cache=True, nogil=True)
def _next_stamp(htab, meta):
    s = meta[M_STAMP] + 1
    if s >= 2_000_000_000:
        htab[:, 1] = -1
        s = 1
    meta[M_STAMP] = s
    meta[M_SETSTART] = meta[M_NITEMS]
    return s


@nb.njit(cache=True, nogil=True)
def _closure(g, items, sets, htab, meta, k, stamp):
    """Completes Earley set ``k`` (its scanned items are already in place)."""
    call_ptr_o = g[H_CALL_PTR]
    call_rule_o = g[H_CALL_RULE]
    call_dst_o = g[H_CALL_DST]
    flags_o = g[H_FLAGS]
    rule_start_o = g[H_RULE_START]
    nullable_o = g[H_NULLABLE]
    n_dense = g[H_NDENSE]
    j = sets[k]
    while j < meta[M_NITEMS]:
        s = items[j, 0]
        o = items[j, 1]
        j += 1
        f = state_flags(g, s)
        if f & F_CALLS:
            cs = call_state(g, s)
            for e in range(g[call_ptr_o + cs], g[call_ptr_o + cs + 1]):
                r = g[call_rule_o + e]
                if _add(items, htab, meta, k, g[rule_start_o + r], k, stamp) == FULL:
                    return FULL
                if g[nullable_o + r] != 0:
                    if _add(items, htab, meta, k, g[call_dst_o + e], o, stamp) == FULL:
                        return FULL
        if (f & F_ACCEPT) and o != k:
            r = state_rule(g, s)
            for m in range(sets[o], sets[o + 1]):
                s2 = items[m, 0]
                if s2 >= n_dense:
                    s2 = call_state(g, s2)
                if s2 >= 0 and g[flags_o + s2] & F_CALLS:
                    for e in range(g[call_ptr_o + s2], g[call_ptr_o + s2 + 1]):
                        if g[call_rule_o + e] == r:
                            if _add(items, htab, meta, k, g[call_dst_o + e], items[m, 1],
                                    stamp) == FULL:
                                return FULL
    return OK


@nb.njit(cache=True, nogil=True)
def append_set(g, items, sets, htab, meta, state, origin):
    """Appends an Earley set holding (state, origin) and its closure. OK, or FULL with the
    state unchanged."""
    k = meta[M_NSETS]
    if k + 1 >= sets.shape[0]:
        return FULL
    start = sets[k]
    stamp = _next_stamp(htab, meta)
    if _add(items, htab, meta, k, state, origin, stamp) == FULL or \
            _closure(g, items, sets, htab, meta, k, stamp) == FULL:
        meta[M_NITEMS] = start
        return FULL
    meta[M_NSETS] = k + 1
    sets[k + 1] = meta[M_NITEMS]
    return OK


@nb.njit(cache=True, nogil=True)
def init_state(g, items, sets, htab, meta):
    """Resets the parser to the initial Earley set. Returns OK or FULL."""
    meta[M_NSETS] = 0
    meta[M_NITEMS] = 0
    sets[0] = 0
    return append_set(g, items, sets, htab, meta, g[g[H_RULE_START] + g[H_START_RULE]], 0)


@nb.njit(cache=True, nogil=True)
def push_byte(g, items, sets, htab, meta, b):
    """Scans byte ``b`` into a new Earley set. REJECT leaves the state unchanged."""
    k = meta[M_NSETS]
    if k + 1 >= sets.shape[0]:
        return FULL
    start = sets[k]
    stamp = _next_stamp(htab, meta)
    c = g[HEADER + b]
    for m in range(sets[k - 1], start):
        s = items[m, 0]
        if state_flags(g, s) & F_BYTES:
            t = step(g, s, c)
            if t >= 0:
                if _add(items, htab, meta, k, t, items[m, 1], stamp) == FULL:
                    meta[M_NITEMS] = start
                    return FULL
    if meta[M_NITEMS] == start:
        return REJECT
    if _closure(g, items, sets, htab, meta, k, stamp) == FULL:
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
    start_rule = g[H_START_RULE]
    for m in range(sets[k], sets[k + 1]):
        s = items[m, 0]
        if items[m, 1] == 0 and (state_flags(g, s) & F_ACCEPT) and state_rule(g, s) == start_rule:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def push_bytes(g, items, sets, htab, meta, data):
    """Scans all of ``data``; on REJECT or FULL the state is restored to what it was."""
    base = meta[M_NSETS]
    for i in range(data.shape[0]):
        r = push_byte(g, items, sets, htab, meta, data[i])
        if r != OK:
            pop_to(sets, meta, base)
            return r
    return OK


@nb.njit(cache=True, nogil=True)
def next_byte_classes(g, items, sets, meta, out):
    """Marks in ``out[class]`` every byte class some item of the last set can scan."""
    k = meta[M_NSETS] - 1
    n_classes = g[H_NCLASSES]
    out[:] = 0
    for m in range(sets[k], sets[k + 1]):
        s = items[m, 0]
        if state_flags(g, s) & F_BYTES:
            for c in range(n_classes):
                if step(g, s, c) >= 0:
                    out[c] = 1


@nb.njit(cache=True, nogil=True)
def jump_forward(g, items, sets, htab, meta, out):
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
        r = push_byte(g, items, sets, htab, meta, only)
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
def fill_mask(g, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids, lcp, skip,
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
            r = push_byte(g, items, sets, htab, meta, tok_bytes[p + pushed])
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
