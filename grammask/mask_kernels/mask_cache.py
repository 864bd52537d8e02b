"""Numba kernels of the adaptive token-mask cache.

For an automaton state ``s`` the cache splits the vocabulary into tokens that are
*accepted* from any item at ``s`` whatever lies below it (all their bytes are consumed inside
the rule of ``s`` and the rules it calls), tokens *rejected* whatever lies below, and
*uncertain* tokens: the rule of ``s`` can complete inside the token and the rest depends on the
caller. A completion counts only when the next byte can follow the rule somewhere in the
grammar (``follow``), so most tokens that leave the rule are rejected up front.

At run time the mask of an Earley set is the union of the accepted sets of its *root* items
(items not predicted in the set itself: every predicted item is covered by the root that
predicted it), plus the uncertain tokens that survive a walk from the live parser state.

Cache table (built lazily, append-only; see grammask.automata.mask_cache):
    cmeta int64[n_states, 5]: kind, acc_off, acc_len, unc_off, unc_len   (kind 0: not built)
    pool  int32[...]        : id lists, bitsets and uncertain lists
kinds: 1 accepted ids, 2 ids of the universe NOT accepted, 3 bitset of accepted, 4 nothing to
scan from this state (no edges).
Uncertain lists hold positions in the sorted vocabulary (trie order), not token ids.

Virtual states of a counter block share entries: a token of at most ``lcap`` bytes completes
at most ``lcap`` copies of the repeated item, so from copy ``c`` only the distances to the
bounds, clamped to ``lcap + 1``, matter; and a distance beyond ``huge`` (the longest token)
is never reached by any token. ``slots`` maps (block, inner state, distance codes: exact up to
``lcap``, ``lcap + 1`` up to ``huge``, ``lcap + 2`` beyond) to a row of ``cmeta``; only the
entries with a ``lcap + 1`` code leave their tokens longer than ``lcap`` bytes uncertain.
The kernels take ``lcap`` and ``huge`` packed in one integer (:func:`pack_limits`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .earley import (
    B_BASE,
    B_CONT,
    B_MAX,
    B_MIN,
    B_QQ,
    B_UNBOUNDED,
    BLOCK_ROW,
    F_ACCEPT,
    F_BYTES,
    F_CALLS,
    FULL,
    H_BLOCKS,
    H_CALL_PTR,
    H_CALL_DST,
    H_CALL_RULE,
    H_FLAGS,
    H_NCALLS,
    H_NCLASSES,
    H_NDENSE,
    H_NRULES,
    H_NULLABLE,
    H_RULE_OF,
    H_RULE_START,
    H_TRANS,
    HEADER,
    M_NITEMS,
    M_NSETS,
    OK,
    REJECT,
    _add,
    _closure,
    _next_stamp,
    append_set,
    block_of,
    can_end,
    pop_to,
    push_byte,
    state_flags,
    step,
)

NEED_CACHE = -2

K_NONE, K_ACC, K_REJ, K_BITS, K_EMPTY = 0, 1, 2, 3, 4
C_KIND, C_ACC_OFF, C_ACC_LEN, C_UNC_OFF, C_UNC_LEN = 0, 1, 2, 3, 4


@nb.njit(cache=True, nogil=True, inline="always")
def _set_bit(row, t):
    row[t >> 5] |= np.int32(1) << np.int32(t & 31)


@nb.njit(cache=True, nogil=True, inline="always")
def _get_bit(row, t):
    return (row[t >> 5] >> np.int32(t & 31)) & 1


@nb.njit(cache=True, nogil=True)
def _exit_possible(g, items, sets, meta):
    """Whether the root rule (the items of origin 0) can complete at the current position."""
    k = meta[M_NSETS] - 1
    for m in range(sets[k], sets[k + 1]):
        if items[m, 1] == 0 and (state_flags(g, items[m, 0]) & F_ACCEPT):
            return True
    return False


@nb.njit(cache=True, nogil=True)
def _start_subparse(g, s, items, sets, htab, meta):
    """An Earley sub-parse holding (s, origin 0) with set 0 left empty, so that the rule of
    ``s`` completing (an *exit*) advances nothing. The last set is index 1."""
    meta[M_NSETS] = 1
    meta[M_NITEMS] = 0
    sets[0] = 0
    sets[1] = 0
    return append_set(g, items, sets, htab, meta, s, 0)


@nb.njit(cache=True, nogil=True)
def _dead_prefix(i, j, u, unc_out, n_unc):
    """Tokens i..j-1 share a prefix the parse rejects: uncertain when the root rule could
    have been left before it (``u``), else rejected. Returns the new uncertain count."""
    if u:
        for q in range(i, j):
            unc_out[n_unc] = q
            n_unc += 1
    return n_unc


@nb.njit(cache=True, nogil=True)
def build_cache(g, root, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids, lcp, skip,
                follow, acc_bits, unc_out, max_depth, long_unc, memo, rex):
    """The cache entry of ``root``: one walk over the vocabulary trie.

    While the walk stays on states without rule calls it steps the DFA directly (one table
    lookup per byte); below a trie node whose state calls other rules it runs an Earley
    sub-parse rooted there, until the walk climbs back above that node. Fills ``acc_bits``
    (cleared first) and ``unc_out`` (sorted trie positions); returns the uncertain count, or
    FULL when the scratch parser buffers are too small. Tokens longer than ``long_unc`` bytes
    (when positive) are all left uncertain. Walks inside loops are taken from, or added to,
    the subtree memo ``memo`` (see "subtree memo"; ``rex``: int32[n_tokens, 2] scratch).
    """
    acc_bits[:] = 0
    return walk_range(g, root, 0, sorted_ids.shape[0], 0, False, items, sets, htab, meta,
                      tok_bytes, tok_ptr, sorted_ids, lcp, skip, follow, acc_bits, unc_out, 0,
                      max_depth, long_unc, memo, rex)


# --------------------------------------------------------------------------- subtree memo
#
# The walks of different states often enter the same loop at the same trie node: every
# key-prefix state of an object whose other keys are free strings enters the string's
# character loop at each first byte that continues no key, and so do the key states of every
# other object of the schema (each with its own copy of the loop). Below that node, the part
# of the walk that stays inside the loop's component depends only on the component's shape
# seen from the state entered, so it is kept in a memo keyed by (shape, first position, depth):
# the tokens of the subtree that end inside the component (a bitset over its trie positions)
# and the ranges of tokens that leave it (walked again by each walk, from its own states:
# what follows the loop differs). A later walk that enters a loop of the same shape at the
# same node copies the bits and walks only the leaving ranges, instead of every node of the
# subtree. Only components without rule calls or accepting states (whose walk then depends
# on nothing outside them), entered by the root rule's DFA from a state of another component
# with nothing uncertain above, and subtrees of at least MEMO_MIN tokens are kept.
#
# The shape of a state is its component's canonical signature (scc_signature); states of one
# shape share a class, named by its first state (memo_class[t]: -2 not computed yet, -1 no
# class). Classes are found by a hash of the signature, then checked against the class's
# first state's signature, so two shapes never share entries.
#
# The memo tuple (``no_memo()`` for walks that keep nothing):
#   tab    int64[cap, 4]: class (-1: empty slot), first position, depth, offset in pool
#   pool   int32[...]   : per entry: end position, leaving ranges, bitset words, range pairs
#   meta   int64[4]     : entries, pool words used, classes
#   cls    int32[n_dense]: class of each state (see above)
#   comp   int32[n_dense]: component of each state (scc_of_states)
#   canon, order, sig, sig2: scc_signature scratch (canon all -1 between uses)
#   ctab   int64[ccap, 2]: signature hash, class
#   rex    int32[n_tokens, 2]: the leaving ranges of the subtree being walked

MEMO_MIN = 32
MEMO_T_CLASS, MEMO_T_POS, MEMO_T_DEPTH, MEMO_T_OFF = 0, 1, 2, 3
MEMO_ENTRIES, MEMO_USED, MEMO_CLASSES = 0, 1, 2
(MT_TAB, MT_POOL, MT_META, MT_CLS, MT_COMP, MT_CANON, MT_ORDER, MT_SIG, MT_SIG2, MT_CTAB, MT_CROW,
 MT_CFIRST) = range(12)


# ------------------------------------------------------------------ plain steps past calls
#
# A state that calls rules makes the walk start an Earley sub-parse at its trie node, and
# every byte below it then costs a parse step. But a byte that no other item of the state's
# Earley closure can take (the items its calls predict, and the items of its own rule past a
# nullable call) is consumed by the state's own byte edge alone, or by nothing: a DFA step, as
# if the state had no calls. So each such state gets, on first use, the set of bytes those
# items take; other bytes step the DFA. Whether the rule can end at the state (it accepts, or
# its rule accepts past a nullable call) is kept beside: a byte of the follow set there makes
# the token uncertain, as the sub-parse would find.
#   crow   int32[n_dense]: row of each state with calls in cfirst, else -1
#   cfirst int32[rows, 9]: the 256-bit set of bytes those items take; word 8: 0 not known
#                          yet, 1 known, 3 known and the rule can end at the state


@nb.njit(cache=True, nogil=True)
def _call_first(g, s, items, sets, htab, meta, cfirst, r):
    """Fills row ``r`` of ``cfirst`` for state ``s`` (see above). OK or FULL."""
    if _start_subparse(g, s, items, sets, htab, meta) == FULL:
        return FULL
    k = meta[M_NSETS] - 1
    for w in range(8):
        cfirst[r, w] = 0
    ends = False
    for m in range(sets[k], sets[k + 1]):
        x = items[m, 0]
        if items[m, 1] == 0:
            if state_flags(g, x) & F_ACCEPT:
                ends = True  # s itself, or its rule past a nullable call
            if x == s:
                continue
        for b in range(256):
            if step(g, x, g[HEADER + b]) >= 0:
                cfirst[r, b >> 5] |= np.int32(1) << np.int32(b & 31)
    cfirst[r, 8] = 3 if ends else 1
    return OK


@nb.njit(cache=True, nogil=True)
def _sig_hash(sig, n):
    h = np.int64(-3750763034362895579)
    for k in range(n):
        h = (h ^ np.int64(sig[k])) * np.int64(1099511628211)
    return h


@nb.njit(cache=True, nogil=True)
def _shape_class(g, t, memo):
    """The class of state ``t`` (see above), computed on first use; -1 for none."""
    cls = memo[MT_CLS]
    c = cls[t]
    if c != -2:
        return c
    comp = memo[MT_COMP]
    canon = memo[MT_CANON]
    order = memo[MT_ORDER]
    sig = memo[MT_SIG]
    n_sig, n_order = scc_signature(g, t, comp, order, canon, sig)
    accepting = any_accepting(g, order, n_order)
    for k in range(n_order):
        canon[order[k]] = -1
    cls[t] = -1
    if n_sig < 0 or accepting:
        return -1
    h = _sig_hash(sig, n_sig)
    ctab = memo[MT_CTAB]
    meta = memo[MT_META]
    cap = ctab.shape[0]
    k = h & (cap - 1)
    for _ in range(cap):
        r = ctab[k, 1]
        if r < 0:
            if 2 * (meta[MEMO_CLASSES] + 1) > cap:
                return -1
            ctab[k, 0] = h
            ctab[k, 1] = t
            meta[MEMO_CLASSES] += 1
            cls[t] = t
            return t
        if ctab[k, 0] == h:
            sig2 = memo[MT_SIG2]
            n2, n_order2 = scc_signature(g, r, comp, order, canon, sig2)
            for q in range(n_order2):
                canon[order[q]] = -1
            if n2 != n_sig:
                return -1
            for q in range(n_sig):
                if sig[q] != sig2[q]:
                    return -1
            cls[t] = r
            return r
        k = (k + 1) & (cap - 1)
    return -1


@nb.njit(cache=True, nogil=True, inline="always")
def _memo_slot(tab, c, i, d):
    """The slot of key (c, i, d) in the memo table, or of the empty slot where it would go;
    -1 when the table is full."""
    cap = tab.shape[0]
    h = ((c * 0x9E3779B1) ^ (i * 0x85EBCA77) ^ (d * 0xC2B2AE3D)) & (cap - 1)
    for _ in range(cap):
        if tab[h, MEMO_T_CLASS] < 0 or (tab[h, MEMO_T_CLASS] == c and tab[h, MEMO_T_POS] == i
                                        and tab[h, MEMO_T_DEPTH] == d):
            return h
        h = (h + 1) & (cap - 1)
    return -1


@nb.njit(cache=True, nogil=True)
def _component_walk(g, root, i0, i1, depth0, comp, tok_bytes, tok_ptr, sorted_ids, lcp, skip,
                    acc_bits, rex, max_depth):
    """Walks tokens ``i0 <= i < i1`` (sharing ``depth0`` bytes, ``root`` reached after them)
    inside ``root``'s component (no accepting state, no calls): sets the bits of the tokens
    that end inside; writes the ranges of tokens that leave it to ``rex`` (tokens dying
    inside are rejected) and returns their count."""
    n_dense = g[H_NDENSE]
    c0 = comp[root]
    states = np.empty(max_depth + 2, dtype=np.int32)
    states[depth0] = root
    n_ex = 0
    pushed = depth0
    i = i0
    while i < i1:
        common = lcp[i] if i > i0 else depth0
        if common < depth0:
            common = depth0
        if common < pushed:
            pushed = common
        p = tok_ptr[i]
        length = tok_ptr[i + 1] - p
        dead = False
        while pushed < length:
            t = step(g, states[pushed], g[HEADER + tok_bytes[p + pushed]])
            if t < 0 or t >= n_dense or comp[t] != c0:
                j = min(skip[p + pushed], i1)
                if t >= 0:
                    if n_ex > 0 and rex[n_ex - 1, 1] == i:
                        rex[n_ex - 1, 1] = j
                    else:
                        rex[n_ex, 0] = i
                        rex[n_ex, 1] = j
                        n_ex += 1
                i = j
                dead = True
                break
            pushed += 1
            states[pushed] = t
        if not dead:
            _set_bit(acc_bits, sorted_ids[i])
            i += 1
    return n_ex


@nb.njit(cache=True, nogil=True)
def _memo_region(g, c, t, i, j, d, memo, tok_bytes, tok_ptr, sorted_ids, lcp, skip, acc_bits,
                 rex, max_depth):
    """Sets the bits of the tokens ``i <= pos < j`` that end inside the component of ``t``
    (entered at depth ``d``, class ``c``), from the memo or by walking them (then kept);
    writes the ranges of tokens that leave the component to ``rex``; returns their count."""
    tab = memo[MT_TAB]
    pool = memo[MT_POOL]
    meta = memo[MT_META]
    n_words = (j - i + 31) >> 5
    h = _memo_slot(tab, c, i, d)
    if h >= 0 and tab[h, MEMO_T_CLASS] >= 0:
        off = tab[h, MEMO_T_OFF]
        n_ex = pool[off + 1]
        w0 = off + 2
        for w in range(n_words):
            word = pool[w0 + w]
            if word == 0:
                continue
            base = i + (w << 5)
            for k in range(min(32, j - base)):
                if (word >> k) & 1:
                    _set_bit(acc_bits, sorted_ids[base + k])
        e0 = w0 + n_words
        for q in range(n_ex):
            rex[q, 0] = pool[e0 + 2 * q]
            rex[q, 1] = pool[e0 + 2 * q + 1]
        return n_ex
    n_ex = _component_walk(g, t, i, j, d, memo[MT_COMP], tok_bytes, tok_ptr, sorted_ids, lcp,
                           skip, acc_bits, rex, max_depth)
    off = meta[MEMO_USED]
    if h < 0 or 4 * (meta[MEMO_ENTRIES] + 1) > tab.shape[0] \
            or off + 2 + n_words + 2 * n_ex > pool.shape[0]:
        return n_ex  # no room: grown after the build
    pool[off] = j
    pool[off + 1] = n_ex
    w0 = off + 2
    pool[w0:w0 + n_words] = 0
    for q in range(i, j):
        if _get_bit(acc_bits, sorted_ids[q]):
            pool[w0 + ((q - i) >> 5)] |= np.int32(1) << np.int32((q - i) & 31)
    e0 = w0 + n_words
    for q in range(n_ex):
        pool[e0 + 2 * q] = rex[q, 0]
        pool[e0 + 2 * q + 1] = rex[q, 1]
    meta[MEMO_USED] = e0 + 2 * n_ex
    tab[h, MEMO_T_POS] = i
    tab[h, MEMO_T_DEPTH] = d
    tab[h, MEMO_T_OFF] = off
    tab[h, MEMO_T_CLASS] = c
    meta[MEMO_ENTRIES] += 1
    return n_ex


@nb.njit(cache=True, nogil=True)
def memo_rehash(old_tab, new_tab):
    """The entries of ``old_tab`` placed in the larger, empty ``new_tab``; returns it."""
    for h in range(old_tab.shape[0]):
        c = old_tab[h, MEMO_T_CLASS]
        if c >= 0:
            k = _memo_slot(new_tab, c, old_tab[h, MEMO_T_POS], old_tab[h, MEMO_T_DEPTH])
            new_tab[k, :] = old_tab[h, :]
    return new_tab


@nb.njit(cache=True, nogil=True)
def state_components(g):
    """:func:`scc_of_states`, and the subtree memo's per-state arrays (see "subtree memo"):
    the class of each dense state (-2: in a loop without calls, a candidate; -1: not), the
    room its class table needs (a power of two), and each state with calls its row among
    them (-1: none). Returns (comp, cyclic, has_calls, cls, ccap, crow, n_calls)."""
    comp, cyclic, has_calls = scc_of_states(g)
    n = g[H_NDENSE]
    flags = g[H_FLAGS]
    cls = np.empty(n, dtype=np.int32)
    crow = np.empty(n, dtype=np.int32)
    n_candidates = 0
    n_calls = 0
    for s in range(n):
        c = comp[s]
        if cyclic[c] and not has_calls[c]:
            cls[s] = -2
            n_candidates += 1
        else:
            cls[s] = -1
        if g[flags + s] & F_CALLS:
            crow[s] = n_calls
            n_calls += 1
        else:
            crow[s] = -1
    need = 2 * (n_candidates + 1)
    ccap = 16
    while ccap < need and ccap < (1 << 16):
        ccap *= 2
    return comp, cyclic, has_calls, cls, ccap, crow, n_calls


@nb.njit(cache=True, nogil=True)
def no_memo():
    """Memo arguments that keep nothing (for walks over parts of subtrees)."""
    e32 = np.zeros(0, dtype=np.int32)
    return ((np.full((0, 4), -1, dtype=np.int64), e32, np.zeros(4, dtype=np.int64), e32, e32,
             e32, e32, e32, e32, np.full((0, 2), -1, dtype=np.int64), e32,
             np.zeros((0, 9), dtype=np.int32)),
            np.zeros((0, 2), dtype=np.int32))


RUN_MAX = 8  # items a DFA run inside an Earley sub-parse may carry


# ------------------------------------------------------------------ stationary sets
#
# Inside a loop of a called rule that may end at every byte (an identifier, a number), each
# byte of the loop builds an Earley set equal to the one before: the same items with the same
# origins, except that items predicted in the new set have it as origin where those of the
# earlier set have the earlier one. Reading the new set's index as the earlier one's maps the
# whole parse onto the parse that ends at the earlier set (every later step only reads the
# last set and the sets its items name as origins), so the walk keeps the earlier set as the
# last one and remembers the byte's class: the next byte of that class below is then no
# parse step at all.
#   stat int32[n_sets, STAT_WORDS]: per set, the 256-bit set of classes known to leave it as
#                                   it is (cleared whenever the set is built anew)

STAT_WORDS = 8
#: Sets larger than this are not compared (quadratic).
STAT_MAX_ITEMS = 32


@nb.njit(cache=True, nogil=True, inline="always")
def _same_as_previous(items, sets, meta):
    """Whether the last Earley set equals the one before it: the same (state, origin) items,
    an origin in the last set read as the one before (then the parse goes on from the earlier
    set exactly as from the last: it refers to the same sets, or to one equal to it)."""
    k1 = meta[M_NSETS] - 1
    k = k1 - 1
    if k < 1:
        return False
    a0 = sets[k]
    a1 = sets[k1]
    b0 = sets[k1]
    b1 = meta[M_NITEMS]
    if a1 - a0 != b1 - b0 or b1 - b0 > STAT_MAX_ITEMS:
        return False
    matched = np.uint64(0)  # items of the earlier set matched so far (each at most once:
    for m in range(b0, b1):  # (s, k) and (s, k1) in the last set both read as (s, k))
        s = items[m, 0]
        o = items[m, 1]
        if o == k1:
            o = k
        found = False
        for q in range(a0, a1):
            if items[q, 0] == s and items[q, 1] == o:
                bit = np.uint64(1) << np.uint64(q - a0)
                if matched & bit:
                    return False
                matched |= bit
                found = True
                break
        if not found:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _plain_items(g, items, sets, meta, run_s, run_o, d):
    """Copies the items of the last set into ``run_s[d]``/``run_o[d]`` when there are at most
    RUN_MAX of them and none of their states accepts or calls rules (the parse is then a
    plain DFA run of each item until one does). Returns the count, or 0."""
    k = meta[M_NSETS] - 1
    n = sets[k + 1] - sets[k]
    if n > RUN_MAX:
        return 0
    for j in range(n):
        s = items[sets[k] + j, 0]
        if state_flags(g, s) & (F_ACCEPT | F_CALLS):
            return 0
        run_s[d, j] = s
        run_o[d, j] = items[sets[k] + j, 1]
    return n


@nb.njit(cache=True, nogil=True)
def _run_step(g, run_s, run_o, run_n, d, cls):
    """Steps the run items of depth ``d`` on a byte class into depth ``d + 1``. Returns
    (count, whether some new state accepts or calls rules)."""
    n = 0
    special = False
    for j in range(run_n[d]):
        t = step(g, run_s[d, j], cls)
        if t < 0:
            continue
        o = run_o[d, j]
        dup = False
        for q in range(n):
            if run_s[d + 1, q] == t and run_o[d + 1, q] == o:
                dup = True
                break
        if dup:
            continue
        run_s[d + 1, n] = t
        run_o[d + 1, n] = o
        n += 1
        if state_flags(g, t) & (F_ACCEPT | F_CALLS):
            special = True
    run_n[d + 1] = n
    return n, special


@nb.njit(cache=True, nogil=True)
def _materialize(g, run_s, run_o, n, d, items, sets, htab, meta):
    """Appends an Earley set holding the run items of depth ``d`` and its closure."""
    k = meta[M_NSETS]
    if k + 1 >= sets.shape[0]:
        return FULL
    start = sets[k]
    stamp = _next_stamp(htab, meta)
    for j in range(n):
        if _add(items, htab, meta, k, run_s[d, j], run_o[d, j], stamp) == FULL:
            meta[M_NITEMS] = start
            return FULL
    if _closure(g, items, sets, htab, meta, k, stamp) == FULL:
        meta[M_NITEMS] = start
        return FULL
    meta[M_NSETS] = k + 1
    sets[k + 1] = meta[M_NITEMS]
    return OK


@nb.njit(cache=True, nogil=True)
def walk_range(g, state0, i0, i1, depth0, u0, items, sets, htab, meta, tok_bytes, tok_ptr,
               sorted_ids, lcp, skip, follow, acc_bits, unc_out, n_unc, max_depth, long_unc,
               memo, rex):
    """Classifies sorted tokens ``i0 <= i < i1``, which share their first ``depth0`` bytes,
    from ``state0`` reached after those bytes (``u0``: whether the root rule could already
    have been left on the way, making them uncertain). Sets accepted bits, appends uncertain
    positions after ``n_unc`` and returns the new count (or FULL).

    Three modes: stepping the root rule's DFA; an Earley sub-parse (from the first state that
    calls rules); and, inside the sub-parse, a DFA run while the parse is a few items whose
    states neither accept nor call (strings and keys inside called rules): each item steps its
    DFA and no Earley set is built for those bytes, since no later item can have its origin
    there; the run ends in a new set once a state accepts or calls. And where a byte leaves
    the parse as it was (see "stationary sets"), no set is built for it.
    """
    states = np.empty(max_depth + 2, dtype=np.int32)
    unc = np.zeros(max_depth + 2, dtype=np.bool_)
    exitp = np.zeros(max_depth + 2, dtype=np.bool_)
    nsets_at = np.zeros(max_depth + 2, dtype=np.int64)
    run_n = np.zeros(max_depth + 2, dtype=np.int64)  # run items at each depth (0: no run)
    run_s = np.empty((max_depth + 2, RUN_MAX), dtype=np.int32)
    run_o = np.empty((max_depth + 2, RUN_MAX), dtype=np.int32)
    states[depth0] = state0
    unc[depth0] = u0
    n_dense = g[H_NDENSE]
    n_classes = g[H_NCLASSES]
    flags_o = g[H_FLAGS]
    trans_o = g[H_TRANS]
    sub = -1  # depth where the Earley sub-parse starts; -1: stepping the DFA
    pushed = depth0
    # a memo region: the subtree below a loop entered at depth reg_d, whose tokens that stay
    # in the loop are done (memo); only its leaving ranges rex[reg_k:reg_n] are walked
    memo_on = long_unc <= 0 and memo[MT_TAB].shape[0] > 0
    cls = memo[MT_CLS]
    comp = memo[MT_COMP]
    crow = memo[MT_CROW]
    cfirst = memo[MT_CFIRST]
    reg_end, reg_d, reg_k, reg_n = -1, 0, 0, 0
    # byte classes known to leave each set as it is (rows allocated with the first sub-parse)
    stat = np.zeros((0, STAT_WORDS), dtype=np.int32)
    i = i0
    while i < i1:
        if reg_end >= 0:
            while reg_k < reg_n and rex[reg_k, 1] <= i:
                reg_k += 1
            nxt = rex[reg_k, 0] if reg_k < reg_n else reg_end
            if nxt >= reg_end:
                if i < reg_end:
                    i = reg_end
                reg_end = -1
                if i >= i1:
                    break
            elif i < nxt:
                i = nxt
                if pushed > reg_d:
                    pushed = reg_d
                if sub > reg_d:
                    sub = -1
        common = lcp[i] if i > i0 else depth0
        if common < depth0:
            common = depth0
        if common < pushed:
            if sub >= 0:
                if common < sub:
                    sub = -1
                else:
                    pop_to(sets, meta, nsets_at[common])
            pushed = common
        p = tok_ptr[i]
        length = tok_ptr[i + 1] - p
        if long_unc > 0 and length > long_unc:
            unc_out[n_unc] = i
            n_unc += 1
            i += 1
            continue
        dead = False
        while pushed < length:
            b = tok_bytes[p + pushed]
            if sub < 0:
                s = states[pushed]
                if s < n_dense:  # the common case, without the accessors' block lookups
                    f = g[flags_o + s]
                    t = g[trans_o + s * n_classes + g[HEADER + b]]
                else:
                    f = state_flags(g, s)
                    t = step(g, s, g[HEADER + b])
                plain = False
                ends = (f & F_ACCEPT) != 0
                if f & F_CALLS and s < crow.shape[0] and crow[s] >= 0:
                    r = crow[s]
                    if cfirst[r, 8] == 0 and _call_first(g, s, items, sets, htab, meta,
                                                         cfirst, r) == FULL:
                        return FULL
                    plain = ((cfirst[r, b >> 5] >> (b & 31)) & 1) == 0
                    ends = cfirst[r, 8] == 3
                if f & F_CALLS and not plain:
                    if _start_subparse(g, s, items, sets, htab, meta) == FULL:
                        return FULL
                    if stat.shape[0] < sets.shape[0]:
                        stat = np.zeros((sets.shape[0], STAT_WORDS), dtype=np.int32)
                    stat[meta[M_NSETS] - 1, :] = 0
                    sub = pushed
                    nsets_at[pushed] = meta[M_NSETS]
                    run_n[pushed] = 0
                    # the rule may end here through a nullable call, not only when s accepts
                    exitp[pushed] = pushed > 0 and _exit_possible(g, items, sets, meta)
                else:
                    u = unc[pushed] or (pushed > 0 and ends and follow[b])
                    if t < 0:
                        j = min(skip[p + pushed], i1)
                        n_unc = _dead_prefix(i, j, u, unc_out, n_unc)
                        i = j
                        dead = True
                        break
                    pushed += 1
                    states[pushed] = t
                    unc[pushed] = u
                    # (a virtual state is in no component: entering t from one enters t's)
                    if memo_on and reg_end < 0 and not u and t < cls.shape[0] \
                            and cls[t] != -1 and (s >= cls.shape[0] or comp[s] != comp[t]):
                        j = min(skip[p + pushed - 1], i1)
                        if j - i >= MEMO_MIN:
                            c = _shape_class(g, t, memo)
                            if c >= 0:
                                reg_n = _memo_region(g, c, t, i, j, pushed, memo, tok_bytes,
                                                     tok_ptr, sorted_ids, lcp, skip, acc_bits,
                                                     rex, max_depth)
                                reg_end, reg_d, reg_k = j, pushed, 0
                                dead = True  # token i: done, or walked again as leaving
                                break
                    continue
            u = unc[pushed] or (exitp[pushed] and follow[b])
            if run_n[pushed] > 0:
                n_next, special = _run_step(g, run_s, run_o, run_n, pushed, g[HEADER + b])
                if n_next == 0:
                    r = REJECT
                elif special:
                    r = _materialize(g, run_s, run_o, n_next, pushed + 1, items, sets, htab,
                                     meta)
                    if r == FULL:
                        return FULL
                    run_n[pushed + 1] = 0
                    stat[meta[M_NSETS] - 1, :] = 0
                else:
                    r = OK
            else:
                k = meta[M_NSETS] - 1
                c = g[HEADER + b]
                if (stat[k, c >> 5] >> (c & 31)) & 1:
                    r = OK  # the set stays the last one
                    run_n[pushed + 1] = 0
                else:
                    r = push_byte(g, items, sets, htab, meta, b)
                    if r == FULL:
                        return FULL
                    if r == OK:
                        if _same_as_previous(items, sets, meta):
                            pop_to(sets, meta, k + 1)
                            stat[k, c >> 5] |= np.int32(1) << np.int32(c & 31)
                            run_n[pushed + 1] = 0
                        else:
                            stat[k + 1, :] = 0
                            run_n[pushed + 1] = _plain_items(g, items, sets, meta, run_s,
                                                             run_o, pushed + 1)
            if r != OK:
                j = min(skip[p + pushed], i1)
                n_unc = _dead_prefix(i, j, u, unc_out, n_unc)
                i = j
                dead = True
                break
            pushed += 1
            unc[pushed] = u
            nsets_at[pushed] = meta[M_NSETS]
            exitp[pushed] = run_n[pushed] == 0 and _exit_possible(g, items, sets, meta)
        if not dead:
            _set_bit(acc_bits, sorted_ids[i])
            i += 1
    return n_unc


# --------------------------------------------------------------------------- call-through
#
# A state whose only way on is one call of a rule (the opening of a string whose length is
# bounded, a value called from an object) accepts, whatever the context, every token its
# callee's start state accepts: a path from it enters the callee. A token the start state
# rejects died inside the callee before the callee could end (or where the next byte cannot
# follow it), so it is rejected here too, unless the callee is nullable and the token skips
# it, which needs its first byte to be one that can follow the callee. So the entry is the
# callee start's entry, with only its uncertain tokens (and, for a nullable callee, the tokens
# that begin with a byte of its follow set) walked again from the state itself: an Earley walk
# over a few thousand tokens instead of the whole vocabulary.


@nb.njit(cache=True, nogil=True)
def call_through_rule(g, s):
    """The rule ``s`` must call, when ``s`` is a dense state whose only edge is one call and
    ``s`` does not accept, and that rule's start state is not ``s`` itself; else -1."""
    if s >= g[H_NDENSE]:
        return -1
    if g[g[H_FLAGS] + s] != F_CALLS:
        return -1
    ptr = g[H_CALL_PTR]
    e0 = g[ptr + s]
    if g[ptr + s + 1] - e0 != 1:
        return -1
    r = g[g[H_CALL_RULE] + e0]
    if g[g[H_RULE_START] + r] == s:
        return -1
    return r


@nb.njit(cache=True, nogil=True)
def build_through(g, s, row_v, skip_bytes, cmeta, pool, universe, items, sets, htab, meta,
                  tok_bytes, tok_ptr, sorted_ids, lcp, skip, follow, acc_bits, unc_out,
                  max_depth):
    """The entry of ``s`` from the entry (row ``row_v``) of the start state of the rule it
    calls: that entry's accepted set; its uncertain tokens, and the tokens whose first byte
    is in ``skip_bytes`` (bool[256]: the callee's follow set when it is nullable, else all
    false), walked from ``s`` in runs of consecutive trie positions. Returns the uncertain
    count or FULL."""
    _write_accepted(cmeta, pool, universe, row_v, acc_bits)
    n = sorted_ids.shape[0]
    cand = np.zeros(n + 1, dtype=np.bool_)
    off = cmeta[row_v, C_UNC_OFF]
    for j in range(off, off + cmeta[row_v, C_UNC_LEN]):
        cand[pool[j]] = True
    for i in range(n):  # sorted tokens: one run per first byte
        if skip_bytes[tok_bytes[tok_ptr[i]]]:
            cand[i] = True
    n_unc = 0
    i = 0
    # runs are parts of subtrees: what a walk finds below a node is not all of it (no memo)
    memo, rex = no_memo()
    while i < n:
        if not cand[i]:
            i += 1
            continue
        q1 = i + 1
        while cand[q1]:
            q1 += 1
        n_unc = walk_range(g, s, i, q1, 0, False, items, sets, htab, meta, tok_bytes,
                           tok_ptr, sorted_ids, lcp, skip, follow, acc_bits, unc_out, n_unc,
                           max_depth, 0, memo, rex)
        if n_unc == FULL:
            return FULL
        i = q1
    return n_unc


# --------------------------------------------------------------------------- follow sets


@nb.njit(cache=True, nogil=True, inline="always")
def _or_row(dst, i, src, j):
    """dst[i] |= src[j] over four words; whether dst[i] changed."""
    changed = False
    for w in range(4):
        x = dst[i, w] | src[j, w]
        if x != dst[i, w]:
            dst[i, w] = x
            changed = True
    return changed


@nb.njit(cache=True, nogil=True)
def follow_sets(g):
    """``follow[r, b]``: whether byte ``b`` can come right after rule ``r`` completes, in some
    context of the grammar (bool[n_rules, 256]).

    FIRST of a return state (the state a call edge leads to) is its own bytes, the FIRST of
    the rules it calls, and, past a nullable call, FIRST of that call's return state; it
    *ends* when it accepts or reaches acceptance through nullable calls only. Then a call of
    ``r`` from rule ``p`` returning to ``d`` puts FIRST(d) in follow(r), and follow(p) too when
    ``d`` ends. Both are least fixpoints over 256-bit sets (four words)."""
    n_dense = g[H_NDENSE]
    n_classes = g[H_NCLASSES]
    n_rules = g[H_NRULES]
    n_calls = g[H_NCALLS]
    class_bits = np.zeros((n_classes, 4), dtype=np.uint64)
    for b in range(256):
        class_bits[g[HEADER + b], b >> 6] |= np.uint64(1) << np.uint64(b & 63)
    call_ptr = g[H_CALL_PTR]
    call_rule = g[H_CALL_RULE]
    call_dst = g[H_CALL_DST]
    rule_start = g[H_RULE_START]
    nullable = g[H_NULLABLE]
    # the states FIRST is needed of: return states and rule starts, numbered by sorting
    keys = np.empty(n_calls + n_rules, dtype=np.int64)
    for e in range(n_calls):
        keys[e] = g[call_dst + e]
    for r in range(n_rules):
        keys[n_calls + r] = g[rule_start + r]
    keys = np.unique(keys)
    n_keys = keys.shape[0]
    first = np.zeros((n_keys, 4), dtype=np.uint64)
    ends = np.zeros(n_keys, dtype=np.bool_)
    for i in range(n_keys):
        q = keys[i]
        ends[i] = (state_flags(g, q) & F_ACCEPT) != 0
        if q >= n_dense or (state_flags(g, q) & F_BYTES) != 0:
            for c in range(n_classes):
                if step(g, q, c) >= 0:
                    for w in range(4):
                        first[i, w] |= class_bits[c, w]
    # the call edges of those states, as (key of the callee's start, key of the return state,
    # nullable callee)
    e_start = np.empty(n_calls, dtype=np.int64)
    e_ret = np.empty(n_calls, dtype=np.int64)
    for e in range(n_calls):
        e_start[e] = np.searchsorted(keys, g[rule_start + g[call_rule + e]])
        e_ret[e] = np.searchsorted(keys, g[call_dst + e])
    changed = True
    while changed:
        changed = False
        for i in range(n_keys):
            q = keys[i]
            if q >= n_dense:
                continue
            for e in range(g[call_ptr + q], g[call_ptr + q + 1]):
                changed |= _or_row(first, i, first, e_start[e])
                if g[nullable + g[call_rule + e]] != 0:
                    d = e_ret[e]
                    changed |= _or_row(first, i, first, d)
                    if ends[d] and not ends[i]:
                        ends[i] = True
                        changed = True
    follow = np.zeros((n_rules, 4), dtype=np.uint64)
    rule_of = g[H_RULE_OF]
    flags = g[H_FLAGS]
    changed = True
    while changed:
        changed = False
        for q in range(n_dense):
            if (g[flags + q] & F_CALLS) == 0:
                continue
            p = g[rule_of + q]
            for e in range(g[call_ptr + q], g[call_ptr + q + 1]):
                r = g[call_rule + e]
                d = e_ret[e]
                changed |= _or_row(follow, r, first, d)
                if ends[d]:
                    changed |= _or_row(follow, r, follow, p)
    out = np.zeros((n_rules, 256), dtype=np.bool_)
    for r in range(n_rules):
        for b in range(256):
            out[r, b] = ((follow[r, b >> 6] >> np.uint64(b & 63)) & np.uint64(1)) != 0
    return out


# --------------------------------------------------------------------------- shared SCC walks
#
# Most of a cold state's walk is spent inside a loop of the automaton: the characters of a
# JSON string, the digits of a number. States whose strongly connected component has the same
# shape (same byte ranges between the same positions, same boundary, same acceptance) classify
# the tokens that stay inside the loop identically, whatever lies after it. So the walk inside
# the component is done once per shape and kept; a state then only walks the tokens that leave
# its component (``exits``: trie ranges sharing the prefix up to and including the leaving
# byte), from the state they leave to. Any partition of the states into strongly connected
# pieces serves (the walk and the shape agree on which transitions leave): components larger
# than SCC_MAX are cut into their nested loops by scc_of_states, so the string loop of a value
# inside an array of objects is shared like any other.

SCC_MAX = 24  # larger components are cut into nested loops until every piece fits


@nb.njit(cache=True, nogil=True)
def scc_of_states(g):
    """Components of the byte transitions between table states, for the shared walks: the
    strongly connected components, where one is larger than SCC_MAX (an array of objects, a
    map: the loop through every value's states) cut into its nested loops: the edges back
    into the component's first state are dropped and the rest split again, until each piece
    is small (the string loop of a value inside an array item becomes a component of its
    own). Every component is strongly connected. Returns (component id per dense state,
    whether each component has a cycle, whether it holds a state with rule calls)."""
    n = g[H_NDENSE]
    index = np.full(n, -1, dtype=np.int32)
    low = np.zeros(n, dtype=np.int32)
    on_stack = np.zeros(n, dtype=np.bool_)
    comp = np.full(n, -1, dtype=np.int32)
    scratch = np.empty((3, n), dtype=np.int32)  # Tarjan stack, work stack (state, next edge)
    cyclic = np.zeros(n, dtype=np.bool_)
    has_calls = np.zeros(n, dtype=np.bool_)
    self_loop = np.zeros(n, dtype=np.bool_)
    # each state's successors by bytes, read from the table once (a state's classes mostly
    # lead nowhere or to the state its neighbour class leads to: a run of one target is one
    # entry); the walks below read these lists
    n_classes = g[H_NCLASSES]
    succ_ptr = np.zeros(n + 1, dtype=np.int32)
    succ = np.empty(16 + 4 * n, dtype=np.int32)
    m = 0
    for v in range(n):
        row = g[H_TRANS] + v * n_classes
        last = -1
        for c in range(n_classes):
            w = g[row + c]
            if w < 0 or w == last:
                continue
            last = w
            if w == v:
                self_loop[v] = True
            if m == succ.shape[0]:
                succ = _grow_to(succ, 2 * m)
            succ[m] = w
            m += 1
        succ_ptr[v + 1] = m
    mark = np.zeros(n, dtype=np.int32)  # members of the piece being split carry its tag
    members = np.arange(n).astype(np.int32)
    n_comp = _tarjan_piece(g, succ_ptr, succ, members, n, -1, mark, 0, index, low, on_stack,
                           comp, scratch, cyclic, has_calls, self_loop, 0)
    size = np.zeros(n, dtype=np.int32)
    for v in range(n):
        size[comp[v]] += 1
    c = 0
    tag = 0
    while c < n_comp:
        if size[c] > SCC_MAX:
            k = 0
            tag += 1
            for v in range(n):
                if comp[v] == c:
                    members[k] = v
                    mark[v] = tag
                    index[v] = -1
                    k += 1
            if n_comp + k > size.shape[0]:
                cap = 2 * (n_comp + k)
                cyclic = _grow_to(cyclic, cap)
                has_calls = _grow_to(has_calls, cap)
                size = _grow_to(size, cap)
            # the first state (lowest number: nearest the rule's start) heads the loop; it
            # ends up alone, so every piece is smaller than the component
            n_comp = _tarjan_piece(g, succ_ptr, succ, members, k, members[0], mark, tag, index,
                                   low, on_stack, comp, scratch, cyclic, has_calls, self_loop,
                                   n_comp)
            for i in range(k):
                size[comp[members[i]]] += 1
            size[c] = 0
        c += 1
    # renumber the components in use densely
    new_id = np.full(n_comp, -1, dtype=np.int32)
    m = 0
    for v in range(n):
        if new_id[comp[v]] < 0:
            new_id[comp[v]] = m
            m += 1
    out_cyclic = np.zeros(m, dtype=np.bool_)
    out_calls = np.zeros(m, dtype=np.bool_)
    for x in range(n_comp):
        if new_id[x] >= 0:
            out_cyclic[new_id[x]] = cyclic[x]
            out_calls[new_id[x]] = has_calls[x]
    for v in range(n):
        comp[v] = new_id[comp[v]]
    return comp, out_cyclic, out_calls


@nb.njit(cache=True, nogil=True)
def _grow_to(a, cap):
    b = np.zeros(cap, dtype=a.dtype)
    b[:a.shape[0]] = a
    return b


@nb.njit(cache=True, nogil=True)
def _tarjan_piece(g, succ_ptr, succ, members, n_members, header, mark, tag, index, low,
                  on_stack, comp, scratch, cyclic, has_calls, self_loop, n_comp):
    """Tarjan's algorithm over the states ``members[:n_members]`` (those with ``mark == tag``),
    ignoring edges into ``header`` (-1: none); the edges of state v are
    ``succ[succ_ptr[v]:succ_ptr[v + 1]]``. Numbers the components found from ``n_comp`` on
    (``comp``, ``cyclic``, ``has_calls``) and returns the new count."""
    n = g[H_NDENSE]
    stack = scratch[0]
    work_s = scratch[1]
    work_c = scratch[2]
    counter = 0
    top = 0
    for i in range(n_members):
        root = members[i]
        if index[root] >= 0:
            continue
        work_s[0] = root
        work_c[0] = succ_ptr[root]  # the next edge to look at, as a position in succ
        wt = 1
        index[root] = low[root] = counter
        counter += 1
        stack[top] = root
        top += 1
        on_stack[root] = True
        while wt > 0:
            v = work_s[wt - 1]
            c = work_c[wt - 1]
            descended = False
            end = succ_ptr[v + 1]
            while c < end:
                w = succ[c]
                c += 1
                if w >= n or w == v or w == header or mark[w] != tag:
                    continue
                if index[w] < 0:
                    work_c[wt - 1] = c
                    index[w] = low[w] = counter
                    counter += 1
                    stack[top] = w
                    top += 1
                    on_stack[w] = True
                    work_s[wt] = w
                    work_c[wt] = succ_ptr[w]
                    wt += 1
                    descended = True
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            if descended:
                continue
            wt -= 1
            if wt > 0:
                parent = work_s[wt - 1]
                if low[v] < low[parent]:
                    low[parent] = low[v]
            if low[v] == index[v]:
                size = 0
                calls = False
                while True:
                    top -= 1
                    w = stack[top]
                    on_stack[w] = False
                    comp[w] = n_comp
                    size += 1
                    if state_flags(g, w) & F_CALLS:
                        calls = True
                    if w == v:
                        break
                cyclic[n_comp] = size > 1 or self_loop[v]
                has_calls[n_comp] = calls
                n_comp += 1
    return n_comp


@nb.njit(cache=True, nogil=True)
def scc_signature(g, root, comp, order, canon, sig):
    """Canonical shape of ``root``'s component seen from ``root``: states numbered in BFS
    order (written to ``order``; ``canon[state]`` gets the number, reset by the caller), and
    for each its acceptance and, over bytes 0..255, runs of (last byte, target) with target
    the BFS number, -1 (no edge) or -2 (leaves the component). Returns (signature length,
    states numbered); the length is -1 when the component is larger than ``order``."""
    n = g[H_NDENSE]
    c0 = comp[root]
    order[0] = root
    canon[root] = 0
    n_order = 1
    k = 0
    pos = 0
    qi = 0
    while qi < n_order:
        s = order[qi]
        qi += 1
        sig[pos] = state_flags(g, s) & F_ACCEPT
        pos += 1
        prev = -3
        for b in range(256):
            t = step(g, s, g[HEADER + b])
            if t < 0:
                code = -1
            elif t >= n or comp[t] != c0:
                code = -2
            else:
                if canon[t] < 0:
                    if n_order >= order.shape[0]:
                        return -1, n_order
                    canon[t] = n_order
                    order[n_order] = t
                    n_order += 1
                code = canon[t]
            if code != prev and b > 0:
                sig[pos] = b - 1
                sig[pos + 1] = prev
                pos += 2
            prev = code
        sig[pos] = 255
        sig[pos + 1] = prev
        pos += 2
        sig[pos] = -9  # end of state
        pos += 1
        k += 1
    return pos, n_order


@nb.njit(cache=True, nogil=True)
def any_accepting(g, order, n_order):
    """Whether one of the states ``order[:n_order]`` is accepting (only then does a walk
    inside their component depend on what may follow the rule)."""
    for k in range(n_order):
        if state_flags(g, order[k]) & F_ACCEPT:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def scc_walk(g, root, comp, canon, tok_bytes, tok_ptr, sorted_ids, lcp, skip, follow,
             acc_bits, unc_out, exits, max_depth):
    """The part of ``root``'s walk inside its component: accepted bits, uncertain positions,
    and exit ranges ``(first, end, depth, canonical state, uncertain)``: tokens
    ``first <= i < end`` leave the component by their byte ``depth`` from that state.
    Returns (uncertain count, exit count)."""
    n_dense = g[H_NDENSE]
    c0 = comp[root]
    acc_bits[:] = 0
    states = np.empty(max_depth + 1, dtype=np.int32)
    unc = np.zeros(max_depth + 1, dtype=np.bool_)
    states[0] = root
    n = sorted_ids.shape[0]
    n_unc = 0
    n_exit = 0
    pushed = 0
    i = 0
    while i < n:
        common = lcp[i]
        if common < pushed:
            pushed = common
        p = tok_ptr[i]
        length = tok_ptr[i + 1] - p
        dead = False
        while pushed < length:
            b = tok_bytes[p + pushed]
            s = states[pushed]
            u = unc[pushed] or (pushed > 0 and (state_flags(g, s) & F_ACCEPT) != 0
                                and follow[b])
            t = step(g, s, g[HEADER + b])
            if t < 0 or t >= n_dense or comp[t] != c0:
                j = skip[p + pushed]
                if t < 0:
                    n_unc = _dead_prefix(i, j, u, unc_out, n_unc)
                else:
                    exits[n_exit, 0] = i
                    exits[n_exit, 1] = j
                    exits[n_exit, 2] = pushed
                    exits[n_exit, 3] = canon[s]
                    exits[n_exit, 4] = 1 if unc[pushed] else 0
                    n_exit += 1
                i = j
                dead = True
                break
            pushed += 1
            states[pushed] = t
            unc[pushed] = u
        if not dead:
            _set_bit(acc_bits, sorted_ids[i])
            i += 1
    return n_unc, n_exit


@nb.njit(cache=True, nogil=True)
def apply_exits(g, order, exits, n_exits, items, sets, htab, meta, tok_bytes, tok_ptr,
                sorted_ids, lcp, skip, follow, acc_bits, unc_out, n_unc, max_depth):
    """Walks the exit ranges of a shared component walk from this state's own states (``order``
    maps canonical numbers to them). Adds to ``acc_bits``/``unc_out``; returns the uncertain
    count or FULL."""
    memo, rex = no_memo()  # exit ranges are parts of subtrees
    for e in range(n_exits):
        i0 = exits[e, 0]
        i1 = exits[e, 1]
        d = exits[e, 2]
        s = order[exits[e, 3]]
        b = tok_bytes[tok_ptr[i0] + d]
        u = exits[e, 4] != 0 or (d > 0 and (state_flags(g, s) & F_ACCEPT) != 0 and follow[b])
        t = step(g, s, g[HEADER + b])
        n_unc = walk_range(g, t, i0, i1, d + 1, u, items, sets, htab, meta, tok_bytes,
                           tok_ptr, sorted_ids, lcp, skip, follow, acc_bits, unc_out, n_unc,
                           max_depth, 0, memo, rex)
        if n_unc == FULL:
            return FULL
    return n_unc


@nb.njit(cache=True, nogil=True)
def _or_accepted(cmeta, pool, universe, s, row):
    kind = cmeta[s, C_KIND]
    off = cmeta[s, C_ACC_OFF]
    ln = cmeta[s, C_ACC_LEN]
    if kind == K_ACC:
        for j in range(off, off + ln):
            _set_bit(row, pool[j])
    elif kind == K_BITS:
        for w in range(ln):
            row[w] |= pool[off + w]
    elif kind == K_REJ:
        # the universe minus the listed ids (sorted), word by word
        j = off
        end = off + ln
        for w in range(row.shape[0]):
            word = universe[w]
            while j < end and (pool[j] >> 5) == w:
                word &= ~(np.int32(1) << np.int32(pool[j] & 31))
                j += 1
            row[w] |= word


@nb.njit(cache=True, nogil=True)
def _write_accepted(cmeta, pool, universe, s, row):
    """Overwrites ``row`` with the accepted set of entry ``s`` (the one-root case: plain
    copies, no per-word merging)."""
    kind = cmeta[s, C_KIND]
    off = cmeta[s, C_ACC_OFF]
    ln = cmeta[s, C_ACC_LEN]
    if kind == K_BITS:
        row[:ln] = pool[off:off + ln]
    elif kind == K_REJ:
        row[:] = universe
        for j in range(off, off + ln):
            t = pool[j]
            row[t >> 5] &= ~(np.int32(1) << np.int32(t & 31))
    else:
        row[:] = 0
        if kind == K_ACC:
            for j in range(off, off + ln):
                _set_bit(row, pool[j])


@nb.njit(cache=True, nogil=True)
def _common_prefix(tok_bytes, pa, la, pb, lb, limit):
    m = min(la, lb, limit)
    k = 0
    while k < m and tok_bytes[pa + k] == tok_bytes[pb + k]:
        k += 1
    return k


@nb.njit(cache=True, nogil=True)
def fill_mask_cached(g, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids, cmeta, pool,
                     slots, lcap, universe, stop_ids, mask_row, roots, unc_buf, missing):
    """The mask of the current Earley set from the cached per-state sets. Returns OK, FULL,
    or NEED_CACHE with the state lacking a cache in ``missing[0]``."""
    k = meta[M_NSETS] - 1
    pool_n = pool.shape[0]
    n_roots = 0
    for m in range(sets[k], sets[k + 1]):
        s = items[m, 0]
        if k > 0 and items[m, 1] == k:
            continue
        if (state_flags(g, s) & (F_BYTES | F_CALLS)) == 0:
            continue
        row = cache_row(g, s, slots, lcap)
        dup = False
        for r in range(n_roots):
            if roots[r] == row:
                dup = True
                break
        if dup:
            continue
        if n_roots >= roots.shape[0]:
            return FULL
        if row < 0 or row >= cmeta.shape[0] or cmeta[row, C_KIND] == K_NONE \
                or cmeta[row, C_ACC_OFF] + cmeta[row, C_ACC_LEN] > pool_n \
                or cmeta[row, C_UNC_OFF] + cmeta[row, C_UNC_LEN] > pool_n:
            missing[0] = s
            return NEED_CACHE
        roots[n_roots] = row
        n_roots += 1
    n_unc = 0
    if n_roots == 1:
        _write_accepted(cmeta, pool, universe, roots[0], mask_row)
        n_unc = cmeta[roots[0], C_UNC_LEN]
    else:
        mask_row[:] = 0
        for r in range(n_roots):
            s = roots[r]
            _or_accepted(cmeta, pool, universe, s, mask_row)
            n_unc += cmeta[s, C_UNC_LEN]
    if n_unc > 0:
        if n_unc > unc_buf.shape[0]:
            return FULL
        if n_roots == 1:
            s = roots[0]
            off = cmeta[s, C_UNC_OFF]
            for j in range(n_unc):
                unc_buf[j] = pool[off + j]
        else:
            c = 0
            for r in range(n_roots):
                s = roots[r]
                off = cmeta[s, C_UNC_OFF]
                for j in range(cmeta[s, C_UNC_LEN]):
                    unc_buf[c] = pool[off + j]
                    c += 1
            unc_buf[:n_unc].sort()
        status = _walk_uncertain(g, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids,
                                 unc_buf, n_unc, mask_row)
        if status == FULL:
            return FULL
    if can_end(g, items, sets, meta):
        for t in stop_ids:
            _set_bit(mask_row, t)
    return OK


@nb.njit(cache=True, nogil=True)
def _walk_uncertain(g, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids, unc, n_unc,
                    mask_row):
    """Checks the uncertain tokens (sorted trie positions) against the live parser state."""
    base = meta[M_NSETS]
    pushed = 0
    prev_p = 0
    prev_len = 0
    j = 0
    status = OK
    while j < n_unc:
        q = unc[j]
        if j > 0 and q == unc[j - 1]:
            j += 1
            continue
        t = sorted_ids[q]
        p = tok_ptr[q]
        length = tok_ptr[q + 1] - p
        if _get_bit(mask_row, t):
            j += 1
            continue
        common = _common_prefix(tok_bytes, prev_p, prev_len, p, length, pushed)
        if common < pushed:
            pop_to(sets, meta, base + common)
            pushed = common
        prev_p = p
        prev_len = length
        ok = True
        while pushed < length:
            r = push_byte(g, items, sets, htab, meta, tok_bytes[p + pushed])
            if r == OK:
                pushed += 1
            else:
                if r == FULL:
                    status = FULL
                ok = False
                break
        if status == FULL:
            break
        if ok:
            _set_bit(mask_row, t)
            j += 1
        else:
            # every following uncertain token with the same dead prefix is rejected too
            dead_len = pushed + 1
            j += 1
            while j < n_unc:
                q2 = unc[j]
                p2 = tok_ptr[q2]
                l2 = tok_ptr[q2 + 1] - p2
                if _common_prefix(tok_bytes, p, length, p2, l2, dead_len) < dead_len:
                    break
                j += 1
    pop_to(sets, meta, base)
    return status


@nb.njit(cache=True, nogil=True)
def popcount_words(words):
    """Number of set bits in an int32 array."""
    total = 0
    for w in range(words.shape[0]):
        x = np.uint32(words[w])
        while x:
            x &= x - np.uint32(1)
            total += 1
    return total


@nb.njit(cache=True, nogil=True)
def bits_to_ids(words, mask_out, out):
    """Writes into ``out`` the ids whose bit is set in ``words`` and clear in ``mask_out``
    (pass zeros to keep all), in increasing order; returns the count."""
    n = 0
    for w in range(words.shape[0]):
        x = np.uint32(words[w]) & ~np.uint32(mask_out[w])
        base = w << 5
        while x:
            low = x & (~x + np.uint32(1))
            b = 0
            y = low
            while y > np.uint32(1):
                y >>= np.uint32(1)
                b += 1
            out[n] = base + b
            n += 1
            x ^= low
    return n


def pack_limits(lcap: int, huge: int) -> int:
    """The slot-table limits as the one integer the kernels take (``lcap`` below 2**16)."""
    assert 0 < lcap < huge and lcap < (1 << 16)
    return lcap | (huge << 16)


@nb.njit(cache=True, nogil=True, inline="always")
def _distance_code(d, lcap, huge):
    """A distance to a bound as a slot coordinate: exact up to ``lcap``; ``lcap + 1`` up to
    ``huge``; ``lcap + 2`` beyond (no token reaches the bound)."""
    if d <= lcap:
        return d
    return lcap + 1 if d <= huge else lcap + 2


@nb.njit(cache=True, nogil=True)
def slot_index(g, s, limits):
    """For a virtual state: (block number, index of its entry within the block's slots)."""
    lcap = limits & 0xFFFF
    huge = limits >> 16
    b = block_of(g, s)
    if g[b + B_CONT] >= 0:  # a run: one entry per count
        return (b - g[H_BLOCKS]) // BLOCK_ROW, s - g[b + B_BASE]
    qq = g[b + B_QQ]
    rel = s - g[b + B_BASE]
    c = rel // qq
    i = rel - c * qq
    dm = g[b + B_MIN] - c
    if dm < 0:
        dm = 0
    dm = _distance_code(dm, lcap, huge)
    if g[b + B_UNBOUNDED]:
        dn = lcap + 2
    else:
        dn = _distance_code(g[b + B_MAX] - c, lcap, huge)
    width = lcap + 3
    return (b - g[H_BLOCKS]) // BLOCK_ROW, (i * width + dm) * width + dn


@nb.njit(cache=True, nogil=True)
def slot_is_clamped(g, s, limits):
    """Whether the entry of virtual state ``s`` is shared by states at different distances
    (between ``lcap`` and ``huge``) from a bound: its tokens longer than ``lcap`` bytes must
    then be left uncertain."""
    lcap = limits & 0xFFFF
    if g[block_of(g, s) + B_CONT] >= 0:
        return False
    _, idx = slot_index(g, s, limits)
    width = lcap + 3
    return idx % width == lcap + 1 or (idx // width) % width == lcap + 1


@nb.njit(cache=True, nogil=True, inline="always")
def cache_row(g, s, slots, limits):
    """The cmeta row of state ``s`` (-1 when a virtual state's entry is not assigned yet).
    ``slots[block]`` is where that block's slot table starts within ``slots``."""
    if s < g[H_NDENSE]:
        return s
    bi, idx = slot_index(g, s, limits)
    return slots[slots[bi] + idx]


@nb.njit(cache=True, nogil=True)
def store_cache_row(cmeta, s, kind, acc_off, acc_len, unc_off, unc_len):
    """Publishes a state's cache row; the kind is written last so a concurrent reader never
    sees a half-written row as built."""
    cmeta[s, C_ACC_OFF] = acc_off
    cmeta[s, C_ACC_LEN] = acc_len
    cmeta[s, C_UNC_OFF] = unc_off
    cmeta[s, C_UNC_LEN] = unc_len
    cmeta[s, C_KIND] = kind
