"""Numba kernels that turn an epsilon-NFA over bytes and call symbols into a minimal DFA.

The main entry point, :func:`build_min_dfa`: subset construction, then minimization (Valmari and
Lehtinen's partition refinement over the transitions, O(m log n), which handles partial
automata without a dead state), then a canonical numbering (breadth first from the start,
successors in byte order, then call symbols in order). Two automata with the same language
therefore come out as identical arrays.

A DFA comes out as: bounds (int32[k+1]: byte class c is bytes bounds[c]..bounds[c+1]-1),
trans (int32[n, k], -1 when no edge), accept (int8[n]), call_syms (int32[j], increasing) and
calls (int32[n, j], the successor after a call of rule call_syms[j], -1 when none), plus the
same automaton as a *fragment* (flat edge rows) that later NFAs can copy.

:func:`layout_rules` numbers the rule DFAs of a grammar into one table over shared byte
classes; :func:`derivable` finds its productive and nullable rules.
"""

from __future__ import annotations

import numba as nb
import numpy as np

TOO_MANY_STATES = -1


@nb.njit(cache=True, nogil=True)
def _csr(n, src):
    """Counting sort of edge indices by source state: (ptr[n+1], order)."""
    m = src.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int32)
    for i in range(m):
        ptr[src[i] + 1] += 1
    for i in range(n):
        ptr[i + 1] += ptr[i]
    fill = ptr[:n].copy()
    order = np.empty(m, dtype=np.int32)
    for i in range(m):
        s = src[i]
        order[fill[s]] = i
        fill[s] += 1
    return ptr, order


@nb.njit(cache=True, nogil=True)
def _sort_prefix(a, n):
    """Sorts a[:n] in place (insertion sort for short runs, Shell sort otherwise: small code,
    quick to compile, and the runs here are short)."""
    gap = 1
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for i in range(gap, n):
            x = a[i]
            j = i - gap
            while j >= 0 and a[j] > x:
                a[j + gap] = a[j]
                j -= gap
            a[j + gap] = x
        gap //= 3


@nb.njit(cache=True, nogil=True)
def _grow(a, need):
    if need <= a.shape[0]:
        return a
    size = a.shape[0] * 2
    while size < need:
        size *= 2
    b = np.empty(size, dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@nb.njit(cache=True, nogil=True, inline="always")
def _closure(seeds, n_seeds, eps_ptr, eps_to, mark, gen, stack, out):
    """Epsilon closure of ``seeds[:n_seeds]`` written sorted into ``out``; returns its size."""
    n_out = 0
    top = 0
    for i in range(n_seeds):
        q = seeds[i]
        if mark[q] != gen:
            mark[q] = gen
            stack[top] = q
            top += 1
    while top > 0:
        top -= 1
        q = stack[top]
        out[n_out] = q
        n_out += 1
        for j in range(eps_ptr[q], eps_ptr[q + 1]):
            t = eps_to[j]
            if mark[t] != gen:
                mark[t] = gen
                stack[top] = t
                top += 1
    _sort_prefix(out, n_out)
    return n_out


@nb.njit(cache=True, nogil=True, inline="always")
def _hash_set(a, n):
    h = np.uint64(14695981039346656037)
    for i in range(n):
        h = (h ^ np.uint64(a[i])) * np.uint64(1099511628211)
    return h


@nb.njit(cache=True, nogil=True)
def _determinize(n_nfa, start, final, eps_ptr, eps_to, lab_ptr, lab, lab_to, n_labels,
                 max_states):
    """Subset construction. Returns (n_dfa, accept, t_ptr, t_lab, t_to) with the transitions
    of each DFA state contiguous and sorted by label, or n_dfa = -1 past ``max_states``."""
    mark = np.zeros(n_nfa, dtype=np.int32)
    gen = 0
    stack = np.empty(n_nfa, dtype=np.int32)
    cur = np.empty(n_nfa, dtype=np.int32)
    # subsets: pool of sorted NFA state lists
    pool = np.empty(max(64, 4 * n_nfa), dtype=np.int32)
    pool_n = 0
    set_off = np.empty(64, dtype=np.int64)
    set_len = np.empty(64, dtype=np.int32)
    set_hash = np.empty(64, dtype=np.uint64)
    accept = np.empty(64, dtype=np.int8)
    n_sets = 0
    hbits = 10
    htab = np.full(1 << hbits, -1, dtype=np.int32)
    # DFA transitions
    t_ptr = np.zeros(65, dtype=np.int32)
    t_lab = np.empty(256, dtype=np.int32)
    t_to = np.empty(256, dtype=np.int32)
    n_t = 0
    # per-label buckets of targets
    cnt = np.zeros(n_labels + 1, dtype=np.int32)
    touched = np.empty(n_labels, dtype=np.int32)
    bucket = np.empty(64, dtype=np.int32)
    seeds = np.empty(1, dtype=np.int32)
    single_id = np.full(n_nfa, -1, dtype=np.int32)  # DFA state of closure({q})

    seeds[0] = start
    gen += 1
    k = _closure(seeds, 1, eps_ptr, eps_to, mark, gen, stack, cur)
    pool = _grow(pool, k)
    pool[:k] = cur[:k]
    pool_n = k
    set_off[0] = 0
    set_len[0] = k
    h = _hash_set(cur, k)
    set_hash[0] = h
    accept[0] = 1 if mark[final] == gen else 0
    htab[h & np.uint64((1 << hbits) - 1)] = 0
    n_sets = 1

    i = 0
    while i < n_sets:
        off = set_off[i]
        ln = set_len[i]
        # count the labelled transitions of the subset per label
        n_touched = 0
        total = 0
        for p in range(off, off + ln):
            q = pool[p]
            for j in range(lab_ptr[q], lab_ptr[q + 1]):
                c = lab[j]
                if cnt[c] == 0:
                    touched[n_touched] = c
                    n_touched += 1
                cnt[c] += 1
                total += 1
        _sort_prefix(touched, n_touched)
        bucket = _grow(bucket, total)
        # prefix offsets (cnt becomes the fill pointer, starts recorded in a second pass)
        pos = 0
        for u in range(n_touched):
            c = touched[u]
            m = cnt[c]
            cnt[c] = pos
            pos += m
        for p in range(off, off + ln):
            q = pool[p]
            for j in range(lab_ptr[q], lab_ptr[q + 1]):
                c = lab[j]
                bucket[cnt[c]] = lab_to[j]
                cnt[c] += 1
        t_lab = _grow(t_lab, n_t + n_touched)
        t_to = _grow(t_to, n_t + n_touched)
        begin = 0
        prev_begin = 0
        prev_end = 0
        found = -1
        for u in range(n_touched):
            c = touched[u]
            end = cnt[c]
            cnt[c] = 0
            # adjacent labels often lead to the same NFA states: reuse the subset
            same = u > 0 and end - begin == prev_end - prev_begin
            if same:
                for x in range(end - begin):
                    if bucket[begin + x] != bucket[prev_begin + x]:
                        same = False
                        break
            prev_begin = begin
            prev_end = end
            if same:
                begin = end
                t_lab[n_t] = c
                t_to[n_t] = found
                n_t += 1
                continue
            single = bucket[begin] if end - begin == 1 else -1
            if single >= 0 and single_id[single] >= 0:
                # the closure of one NFA state: known from an earlier transition
                found = single_id[single]
                begin = end
                t_lab[n_t] = c
                t_to[n_t] = found
                n_t += 1
                continue
            gen += 1
            k = _closure(bucket[begin:end], end - begin, eps_ptr, eps_to, mark, gen, stack, cur)
            begin = end
            h = _hash_set(cur, k)
            mask = np.uint64((1 << hbits) - 1)
            slot = h & mask
            found = -1
            while htab[slot] >= 0:
                d = htab[slot]
                if set_hash[d] == h and set_len[d] == k:
                    o = set_off[d]
                    same = True
                    for x in range(k):
                        if pool[o + x] != cur[x]:
                            same = False
                            break
                    if same:
                        found = d
                        break
                slot = (slot + np.uint64(1)) & mask
            if found < 0:
                if n_sets >= max_states:
                    return -1, accept, t_ptr, t_lab, t_to
                found = n_sets
                if n_sets == set_off.shape[0]:
                    set_off = _grow(set_off, n_sets + 1)
                    set_len = _grow(set_len, n_sets + 1)
                    set_hash = _grow(set_hash, n_sets + 1)
                    accept = _grow(accept, n_sets + 1)
                pool = _grow(pool, pool_n + k)
                pool[pool_n:pool_n + k] = cur[:k]
                set_off[found] = pool_n
                set_len[found] = k
                set_hash[found] = h
                accept[found] = 1 if mark[final] == gen else 0
                pool_n += k
                n_sets += 1
                htab[slot] = found
                if 2 * n_sets > htab.shape[0]:
                    hbits += 1
                    htab = np.full(1 << hbits, -1, dtype=np.int32)
                    mask = np.uint64((1 << hbits) - 1)
                    for d in range(n_sets):
                        s2 = set_hash[d] & mask
                        while htab[s2] >= 0:
                            s2 = (s2 + np.uint64(1)) & mask
                        htab[s2] = d
            if single >= 0:
                single_id[single] = found
            t_lab[n_t] = c
            t_to[n_t] = found
            n_t += 1
        t_ptr = _grow(t_ptr, i + 2)
        t_ptr[i + 1] = n_t
        i += 1
    return n_sets, accept[:n_sets], t_ptr[: n_sets + 1], t_lab[:n_t], t_to[:n_t]


# --------------------------------------------------------------------------- minimization
# Refinable partitions, packed in one int32[7, n + 1] array (one array argument: calls stay
# cheap). Row ELEMS lists the elements set by set, set s occupying ELEMS[FIRST[s]:PAST[s]];
# its marked elements are moved to ELEMS[FIRST[s]:MID[s]]. LOC is the position of an element
# in ELEMS, SET its set; TOUCHED lists the sets with marked elements.
ELEMS, LOC, SET, FIRST, PAST, MID, TOUCHED = range(7)


@nb.njit(cache=True, nogil=True)
def _partition(n):
    """One set holding the elements 0..n-1."""
    p = np.zeros((7, n + 1), dtype=np.int32)
    p[ELEMS, :n] = np.arange(n)
    p[LOC, :n] = np.arange(n)
    p[PAST, 0] = n
    return p


@nb.njit(cache=True, nogil=True, inline="always")
def _mark(p, e, n_touched):
    s = p[SET, e]
    i = p[LOC, e]
    j = p[MID, s]
    if i >= j:
        f = p[ELEMS, j]
        p[ELEMS, i] = f
        p[LOC, f] = i
        p[ELEMS, j] = e
        p[LOC, e] = j
        if j == p[FIRST, s]:
            p[TOUCHED, n_touched] = s
            n_touched += 1
        p[MID, s] = j + 1
    return n_touched


@nb.njit(cache=True, nogil=True, inline="always")
def _split(p, n_touched, z):
    """Splits every touched set into its marked and unmarked parts; the smaller part becomes
    a new set. Returns the new number of sets."""
    while n_touched > 0:
        n_touched -= 1
        s = p[TOUCHED, n_touched]
        j = p[MID, s]
        first = p[FIRST, s]
        past = p[PAST, s]
        if j == past:
            p[MID, s] = first
            continue
        if j - first <= past - j:
            p[FIRST, z] = first
            p[PAST, z] = j
            p[FIRST, s] = j
        else:
            p[FIRST, z] = j
            p[PAST, z] = past
            p[PAST, s] = j
        for i in range(p[FIRST, z], p[PAST, z]):
            p[SET, p[ELEMS, i]] = z
        p[MID, s] = p[FIRST, s]
        p[MID, z] = p[FIRST, z]
        z += 1
    return z


@nb.njit(cache=True, nogil=True)
def _minimize(n, accept, t_ptr, t_lab, t_to, n_labels):
    """Minimal-DFA blocks of the DFA rooted at state 0. Returns block[n] (-1 for states that
    lead to no accepting state) and the number of blocks."""
    # keep states from which an accepting state is reachable (all are reachable from 0)
    m_all = t_to.shape[0]
    t_from = np.empty(m_all, dtype=np.int32)
    for s in range(n):
        for j in range(t_ptr[s], t_ptr[s + 1]):
            t_from[j] = s
    in_ptr, in_ord = _csr(n, t_to)
    live = np.zeros(n, dtype=np.bool_)
    stack = np.empty(n, dtype=np.int32)
    top = 0
    for s in range(n):
        if accept[s]:
            live[s] = True
            stack[top] = s
            top += 1
    while top > 0:
        top -= 1
        t = stack[top]
        for j in range(in_ptr[t], in_ptr[t + 1]):
            s = t_from[in_ord[j]]
            if not live[s]:
                live[s] = True
                stack[top] = s
                top += 1
    block = np.full(n, -1, dtype=np.int32)
    if not live[0]:
        return block, 0
    new = np.full(n, -1, dtype=np.int32)
    nn = 0
    for s in range(n):
        if live[s]:
            new[s] = nn
            nn += 1
    # transitions between live states, renumbered
    mm = 0
    for j in range(m_all):
        if live[t_from[j]] and live[t_to[j]]:
            mm += 1
    tail = np.empty(mm, dtype=np.int32)
    label = np.empty(mm, dtype=np.int32)
    head = np.empty(mm, dtype=np.int32)
    k = 0
    for j in range(m_all):
        if live[t_from[j]] and live[t_to[j]]:
            tail[k] = new[t_from[j]]
            label[k] = t_lab[j]
            head[k] = new[t_to[j]]
            k += 1

    # blocks: start with one, split off the accepting states
    bp = _partition(nn)
    nt = 0
    for s in range(n):
        if live[s] and accept[s]:
            nt = _mark(bp, new[s], nt)
    bz = _split(bp, nt, 1)

    # cords: transitions grouped by label
    cp = _partition(mm)
    c_ptr, c_elems = _csr(n_labels, label)
    cz = 0
    for lb in range(n_labels):
        if c_ptr[lb + 1] > c_ptr[lb]:
            cp[FIRST, cz] = c_ptr[lb]
            cp[PAST, cz] = c_ptr[lb + 1]
            cp[MID, cz] = c_ptr[lb]
            for i in range(c_ptr[lb], c_ptr[lb + 1]):
                e = c_elems[i]
                cp[ELEMS, i] = e
                cp[LOC, e] = i
                cp[SET, e] = cz
            cz += 1
    a_ptr, a_ord = _csr(nn, head)  # incoming transitions per live state

    b = 1
    c = 0
    while c < cz:
        nt = 0
        for i in range(cp[FIRST, c], cp[PAST, c]):
            nt = _mark(bp, tail[cp[ELEMS, i]], nt)
        bz = _split(bp, nt, bz)
        c += 1
        while b < bz:
            nt = 0
            for i in range(bp[FIRST, b], bp[PAST, b]):
                q = bp[ELEMS, i]
                for j in range(a_ptr[q], a_ptr[q + 1]):
                    nt = _mark(cp, a_ord[j], nt)
            cz = _split(cp, nt, cz)
            b += 1
    for s in range(n):
        if live[s]:
            block[s] = bp[SET, new[s]]
    return block, bz


@nb.njit(cache=True, nogil=True)
def _expand(eps, edges, calls, copies, f_ptr, f_edges, f_acc, f_calls):
    """The NFA as parallel arrays, with every fragment copy written out. Fragment f's edges
    are f_edges[4*f_ptr[f, 0] : 4*f_ptr[f+1, 0]] (src, lo, hi, dst relative to the copy),
    its accepting states f_acc[f_ptr[f, 1] : f_ptr[f+1, 1]], its calls
    f_calls[3*f_ptr[f, 2] : 3*f_ptr[f+1, 2]] (src, symbol, dst); a copy is (fragment, entry,
    exit, first state): an epsilon edge enters the fragment's start (its state 0) and every
    accepting state has an epsilon edge to the exit."""
    n_eps = eps.shape[0] // 2
    n_e = edges.shape[0] // 4
    n_c = calls.shape[0] // 3
    n_copies = copies.shape[0] // 4
    for i in range(n_copies):
        f = copies[4 * i]
        n_eps += 1 + f_ptr[f + 1, 1] - f_ptr[f, 1]
        n_e += f_ptr[f + 1, 0] - f_ptr[f, 0]
        n_c += f_ptr[f + 1, 2] - f_ptr[f, 2]
    eps_src = np.empty(n_eps, dtype=np.int32)
    eps_dst = np.empty(n_eps, dtype=np.int32)
    e_src = np.empty(n_e, dtype=np.int32)
    e_lo = np.empty(n_e, dtype=np.int32)
    e_hi = np.empty(n_e, dtype=np.int32)
    e_dst = np.empty(n_e, dtype=np.int32)
    c_src = np.empty(n_c, dtype=np.int32)
    c_sym = np.empty(n_c, dtype=np.int32)
    c_dst = np.empty(n_c, dtype=np.int32)
    ke = eps.shape[0] // 2
    for i in range(ke):
        eps_src[i] = eps[2 * i]
        eps_dst[i] = eps[2 * i + 1]
    kb = edges.shape[0] // 4
    for i in range(kb):
        e_src[i] = edges[4 * i]
        e_lo[i] = edges[4 * i + 1]
        e_hi[i] = edges[4 * i + 2]
        e_dst[i] = edges[4 * i + 3]
    kc = calls.shape[0] // 3
    for i in range(kc):
        c_src[i] = calls[3 * i]
        c_sym[i] = calls[3 * i + 1]
        c_dst[i] = calls[3 * i + 2]
    for i in range(n_copies):
        f = copies[4 * i]
        entry = copies[4 * i + 1]
        exit_ = copies[4 * i + 2]
        off = copies[4 * i + 3]
        eps_src[ke] = entry
        eps_dst[ke] = off
        ke += 1
        for j in range(f_ptr[f, 1], f_ptr[f + 1, 1]):
            eps_src[ke] = off + f_acc[j]
            eps_dst[ke] = exit_
            ke += 1
        for j in range(f_ptr[f, 0], f_ptr[f + 1, 0]):
            e_src[kb] = off + f_edges[4 * j]
            e_lo[kb] = f_edges[4 * j + 1]
            e_hi[kb] = f_edges[4 * j + 2]
            e_dst[kb] = off + f_edges[4 * j + 3]
            kb += 1
        for j in range(f_ptr[f, 2], f_ptr[f + 1, 2]):
            c_src[kc] = off + f_calls[3 * j]
            c_sym[kc] = f_calls[3 * j + 1]
            c_dst[kc] = off + f_calls[3 * j + 2]
            kc += 1
    return eps_src, eps_dst, e_src, e_lo, e_hi, e_dst, c_src, c_sym, c_dst


@nb.njit(cache=True, nogil=True)
def build_min_dfa(n_nfa, eps, edges, calls, copies, f_ptr, f_edges, f_acc, f_calls,
                  max_states):
    """The canonical minimal DFA of an epsilon-NFA from state 0 to state 1.

    The NFA is given as flat int32 lists: ``eps`` (src, dst pairs), ``edges`` (src, lo, hi,
    dst: an inclusive byte range), ``calls`` (src, call symbol, dst), plus ``copies`` of
    fragments (see :func:`_expand`). Returns (status, bounds, trans, accept, call_syms,
    calls, rows, acc_states, call_rows): the DFA as in the module docstring, its call symbols
    (increasing; ``calls[s, j]`` is the successor on ``call_syms[j]``) and the same DFA in
    fragment form (``rows``: src, lo, hi, dst with adjacent classes merged).
    """
    eps_src, eps_dst, e_src, e_lo, e_hi, e_dst, c_src, c_sym, c_dst = _expand(
        eps, edges, calls, copies, f_ptr, f_edges, f_acc, f_calls)
    # byte classes: cut [0, 256) at every range boundary
    cut = np.zeros(257, dtype=np.bool_)
    cut[0] = True
    cut[256] = True
    for i in range(e_lo.shape[0]):
        cut[e_lo[i]] = True
        cut[e_hi[i] + 1] = True
    cls = np.empty(256, dtype=np.int32)
    k = -1
    for b in range(256):
        if cut[b]:
            k += 1
        cls[b] = k
    k += 1
    bounds = np.empty(k + 1, dtype=np.int32)
    j = 0
    for b in range(257):
        if cut[b]:
            bounds[j] = b
            j += 1
    # call symbols -> columns after the byte classes, in increasing order
    top = 0
    for i in range(c_sym.shape[0]):
        top = max(top, c_sym[i] + 1)
    col_of_sym = np.full(top, -1, dtype=np.int32)
    for i in range(c_sym.shape[0]):
        col_of_sym[c_sym[i]] = 0
    n_cols = 0
    for x in range(top):
        if col_of_sym[x] == 0:
            col_of_sym[x] = n_cols
            n_cols += 1
    call_syms = np.empty(n_cols, dtype=np.int32)
    for x in range(top):
        if col_of_sym[x] >= 0:
            call_syms[col_of_sym[x]] = x
    n_labels = k + n_cols

    # labelled transitions: one per (edge, covered class) and per call edge
    m = c_src.shape[0]
    for i in range(e_lo.shape[0]):
        m += cls[e_hi[i]] - cls[e_lo[i]] + 1
    l_src = np.empty(m, dtype=np.int32)
    l_lab = np.empty(m, dtype=np.int32)
    l_dst = np.empty(m, dtype=np.int32)
    m = 0
    for i in range(e_lo.shape[0]):
        for c in range(cls[e_lo[i]], cls[e_hi[i]] + 1):
            l_src[m] = e_src[i]
            l_lab[m] = c
            l_dst[m] = e_dst[i]
            m += 1
    for i in range(c_src.shape[0]):
        l_src[m] = c_src[i]
        l_lab[m] = k + col_of_sym[c_sym[i]]
        l_dst[m] = c_dst[i]
        m += 1
    lab_ptr, order = _csr(n_nfa, l_src)
    lab = np.empty(m, dtype=np.int32)
    lab_to = np.empty(m, dtype=np.int32)
    for i in range(m):
        lab[i] = l_lab[order[i]]
        lab_to[i] = l_dst[order[i]]
    eps_ptr, eorder = _csr(n_nfa, eps_src)
    eps_to = np.empty(eorder.shape[0], dtype=np.int32)
    for i in range(eorder.shape[0]):
        eps_to[i] = eps_dst[eorder[i]]

    n, accept, t_ptr, t_lab, t_to = _determinize(
        n_nfa, 0, 1, eps_ptr, eps_to, lab_ptr, lab, lab_to, n_labels, max_states)
    if n < 0:
        return _result(TOO_MANY_STATES, bounds, np.full((1, k), -1, dtype=np.int32),
                       np.zeros(1, dtype=np.int8), call_syms,
                       np.full((1, n_cols), -1, dtype=np.int32))
    block, n_blocks = _minimize(n, accept, t_ptr, t_lab, t_to, n_labels)
    if n_blocks == 0:  # empty language: one rejecting state
        return _result(0, bounds, np.full((1, k), -1, dtype=np.int32),
                       np.zeros(1, dtype=np.int8), call_syms[:0],
                       np.full((1, 0), -1, dtype=np.int32))

    # canonical numbering: breadth first from the start, successors in label order
    order_of = np.full(n_blocks, -1, dtype=np.int32)
    rep = np.full(n_blocks, -1, dtype=np.int32)
    for s in range(n):
        bl = block[s]
        if bl >= 0 and rep[bl] < 0:
            rep[bl] = s
    queue = np.empty(n_blocks, dtype=np.int32)
    queue[0] = block[0]
    order_of[block[0]] = 0
    q_n = 1
    qi = 0
    while qi < q_n:
        s = rep[queue[qi]]
        qi += 1
        for j in range(t_ptr[s], t_ptr[s + 1]):
            tb = block[t_to[j]]
            if tb >= 0 and order_of[tb] < 0:
                order_of[tb] = q_n
                queue[q_n] = tb
                q_n += 1
    trans = np.full((n_blocks, k), -1, dtype=np.int32)
    ctab = np.full((n_blocks, n_cols), -1, dtype=np.int32)
    acc = np.zeros(n_blocks, dtype=np.int8)
    for bl in range(n_blocks):
        s = rep[bl]
        r = order_of[bl]
        acc[r] = accept[s]
        for j in range(t_ptr[s], t_ptr[s + 1]):
            tb = block[t_to[j]]
            if tb < 0:
                continue
            lb = t_lab[j]
            if lb < k:
                trans[r, lb] = order_of[tb]
            else:
                ctab[r, lb - k] = order_of[tb]
    # call symbols no edge uses any more (they led to dead states) are dropped
    used = np.zeros(n_cols, dtype=np.bool_)
    for r in range(n_blocks):
        for c in range(n_cols):
            if ctab[r, c] >= 0:
                used[c] = True
    n_used = 0
    for c in range(n_cols):
        n_used += used[c]
    if n_used < n_cols:
        syms = np.empty(n_used, dtype=np.int32)
        tab = np.empty((n_blocks, n_used), dtype=np.int32)
        j = 0
        for c in range(n_cols):
            if used[c]:
                syms[j] = call_syms[c]
                for r in range(n_blocks):
                    tab[r, j] = ctab[r, c]
                j += 1
        call_syms = syms
        ctab = tab
    return _result(0, bounds, trans, acc, call_syms, ctab)


@nb.njit(cache=True, nogil=True)
def _result(status, bounds, trans, acc, call_syms, ctab):
    """Adds the fragment form of the DFA to the tables."""
    n, k = trans.shape
    rows = np.empty(4 * n * k, dtype=np.int32)
    m = 0
    for s in range(n):
        c = 0
        while c < k:
            t = trans[s, c]
            if t < 0:
                c += 1
                continue
            e = c + 1
            while e < k and trans[s, e] == t:
                e += 1
            rows[m] = s
            rows[m + 1] = bounds[c]
            rows[m + 2] = bounds[e] - 1
            rows[m + 3] = t
            m += 4
            c = e
    n_acc = 0
    for s in range(n):
        if acc[s]:
            n_acc += 1
    acc_states = np.empty(n_acc, dtype=np.int32)
    n_acc = 0
    for s in range(n):
        if acc[s]:
            acc_states[n_acc] = s
            n_acc += 1
    n_cols = ctab.shape[1]
    call_rows = np.empty(3 * n * n_cols, dtype=np.int32)
    mc = 0
    for s in range(n):
        for c in range(n_cols):
            if ctab[s, c] >= 0:
                call_rows[mc] = s
                call_rows[mc + 1] = call_syms[c]
                call_rows[mc + 2] = ctab[s, c]
                mc += 3
    return (status, bounds, trans, acc, call_syms, ctab, rows[:m].copy(), acc_states,
            call_rows[:mc].copy())


# --------------------------------------------------------------------------- grammar analysis


@nb.njit(cache=True, nogil=True)
def derivable(n, accept, call_ptr, call_rule, call_dst, rule_start, e_src, e_dst):
    """Which rules derive a string (given the byte edges ``e_src[i] -> e_dst[i]``) or the
    empty string (given none), over the rule DFAs numbered into one table of ``n`` states
    (call edges in CSR form). A state derives when it accepts, or has a byte edge to a
    deriving state, or a call edge to a deriving state whose called rule derives: a Horn
    propagation, linear in the number of edges. Returns int8[n_rules]."""
    n_rules = rule_start.shape[0]
    n_calls = call_rule.shape[0]
    rule_at = np.full(n, -1, dtype=np.int32)
    for r in range(n_rules):
        rule_at[rule_start[r]] = r
    # predecessors by byte edges (CSR by target)
    rb_ptr, rb_order = _csr(n, e_dst)
    rb_src = np.empty(rb_order.shape[0], dtype=np.int32)
    for j in range(rb_order.shape[0]):
        rb_src[j] = e_src[rb_order[j]]
    # call edges: each fires when both its target state and its called rule derive
    call_src = np.empty(n_calls, dtype=np.int32)
    for s in range(n):
        for e in range(call_ptr[s], call_ptr[s + 1]):
            call_src[e] = s
    by_dst_ptr, by_dst = _csr(n, call_dst)
    by_rule_ptr, by_rule = _csr(n_rules, call_rule)
    need = np.full(n_calls, 2, dtype=np.int8)
    good = np.zeros(n, dtype=np.bool_)
    derives = np.zeros(n_rules, dtype=np.int8)
    stack = np.empty(n, dtype=np.int32)
    top = 0
    for s in range(n):
        if accept[s]:
            good[s] = True
            stack[top] = s
            top += 1
    while top > 0:
        top -= 1
        t = stack[top]
        for j in range(rb_ptr[t], rb_ptr[t + 1]):
            s = rb_src[j]
            if not good[s]:
                good[s] = True
                stack[top] = s
                top += 1
        for j in range(by_dst_ptr[t], by_dst_ptr[t + 1]):
            e = by_dst[j]
            need[e] -= 1
            if need[e] == 0 and not good[call_src[e]]:
                good[call_src[e]] = True
                stack[top] = call_src[e]
                top += 1
        r = rule_at[t]
        if r >= 0:
            derives[r] = 1
            for j in range(by_rule_ptr[r], by_rule_ptr[r + 1]):
                e = by_rule[j]
                need[e] -= 1
                if need[e] == 0 and not good[call_src[e]]:
                    good[call_src[e]] = True
                    stack[top] = call_src[e]
                    top += 1
    return derives


@nb.njit(cache=True, nogil=True)
def layout_rules(sizes, widths, trans_flat, bounds_flat, call_rows_flat, call_counts, tag):
    """Numbers the rule DFAs into one state space over shared byte classes.

    Rule r has ``sizes[r]`` states and ``widths[r]`` byte classes; its tables come
    concatenated: transitions (row-major, local states), class bounds (``widths[r] + 1``
    values) and ``call_counts[r]`` call rows (src, rule, dst; sorted by
    src). Global state ``base[r] + s`` is state s of rule r. Bytes are cut at every rule's
    class bounds and wherever ``tag`` (int32[256]) changes; the intervals that every rule
    treats alike and that have the same tag form one class, classes numbered in order of
    their first byte.

    Returns (byte_class int32[256], trans int32[n, n_classes], has_bytes int8[n],
    call_ptr int32[n + 1], call_rule int32[m], call_dst int32[m]).
    """
    n_rules = sizes.shape[0]
    base = np.zeros(n_rules + 1, dtype=np.int64)
    toff = np.zeros(n_rules + 1, dtype=np.int64)
    boff = np.zeros(n_rules + 1, dtype=np.int64)
    coff = np.zeros(n_rules + 1, dtype=np.int64)
    for r in range(n_rules):
        base[r + 1] = base[r] + sizes[r]
        toff[r + 1] = toff[r] + sizes[r] * widths[r]
        boff[r + 1] = boff[r] + widths[r] + 1
        coff[r + 1] = coff[r] + widths[r]
    n = base[n_rules]
    # intervals: cut at every rule's bounds
    cut = np.zeros(257, dtype=np.bool_)
    for i in range(bounds_flat.shape[0]):
        cut[bounds_flat[i]] = True
    for b in range(1, 256):
        if tag[b] != tag[b - 1]:
            cut[b] = True
    iv_lo = np.empty(257, dtype=np.int32)
    n_iv = 0
    for b in range(256):
        if cut[b]:
            iv_lo[n_iv] = b
            n_iv += 1
    # the local class of every interval in every rule
    loc = np.empty((n_rules, n_iv), dtype=np.int32)
    for r in range(n_rules):
        j = 0
        for iv in range(n_iv):
            while bounds_flat[boff[r] + j + 1] <= iv_lo[iv]:
                j += 1
            loc[r, iv] = j
    # equal columns within each rule get one id (the first such column)
    col_id = np.empty(coff[n_rules], dtype=np.int32)
    for r in range(n_rules):
        k = widths[r]
        nr = sizes[r]
        t0 = toff[r]
        # column hashes, accumulated row by row (the table is row-major)
        h = np.full(k, np.uint64(1469598103934665603), dtype=np.uint64)
        for s in range(nr):
            row = t0 + s * k
            for c in range(k):
                h[c] = (h[c] ^ np.uint64(trans_flat[row + c] + 2)) * np.uint64(1099511628211)
        for c in range(k):
            x = h[c]
            col_id[coff[r] + c] = c
            for c2 in range(c):
                if h[c2] != x or col_id[coff[r] + c2] != c2:
                    continue
                same = True
                for s in range(nr):
                    if trans_flat[t0 + s * k + c] != trans_flat[t0 + s * k + c2]:
                        same = False
                        break
                if same:
                    col_id[coff[r] + c] = c2
                    break
    # intervals whose columns are equal in every rule form one class
    cls_of_iv = np.empty(n_iv, dtype=np.int32)
    rep = np.empty(n_iv, dtype=np.int32)
    rep_hash = np.empty(n_iv, dtype=np.uint64)
    n_cls = 0
    for iv in range(n_iv):
        x = (np.uint64(1469598103934665603) ^ np.uint64(tag[iv_lo[iv]] + 1)) \
            * np.uint64(1099511628211)
        for r in range(n_rules):
            x = (x ^ np.uint64(col_id[coff[r] + loc[r, iv]])) * np.uint64(1099511628211)
        found = -1
        for c in range(n_cls):
            if rep_hash[c] != x:
                continue
            same = tag[iv_lo[iv]] == tag[iv_lo[rep[c]]]
            for r in range(n_rules):
                if not same:
                    break
                if col_id[coff[r] + loc[r, iv]] != col_id[coff[r] + loc[r, rep[c]]]:
                    same = False
                    break
            if same:
                found = c
                break
        if found < 0:
            found = n_cls
            rep[n_cls] = iv
            rep_hash[n_cls] = x
            n_cls += 1
        cls_of_iv[iv] = found
    byte_class = np.empty(256, dtype=np.int32)
    iv = -1
    for b in range(256):
        if cut[b]:
            iv += 1
        byte_class[b] = cls_of_iv[iv]
    # the global table, byte edges and call edges
    trans = np.empty((n, n_cls), dtype=np.int32)
    has_bytes = np.zeros(n, dtype=np.int8)
    src_col = np.empty(n_cls, dtype=np.int64)
    for r in range(n_rules):
        k = widths[r]
        for c in range(n_cls):
            src_col[c] = loc[r, rep[c]]
        b = base[r]
        for s in range(sizes[r]):
            g = b + s
            row = toff[r] + s * k
            for c in range(k):
                if trans_flat[row + c] >= 0:
                    has_bytes[g] = 1
                    break
            for c in range(n_cls):
                t = trans_flat[row + src_col[c]]
                trans[g, c] = t + b if t >= 0 else -1
    m = call_rows_flat.shape[0] // 3
    call_ptr = np.zeros(n + 1, dtype=np.int32)
    call_rule = np.empty(m, dtype=np.int32)
    call_dst = np.empty(m, dtype=np.int32)
    i = 0
    for r in range(n_rules):
        for _ in range(call_counts[r]):
            g = base[r] + call_rows_flat[3 * i]
            call_ptr[g + 1] += 1
            call_rule[i] = call_rows_flat[3 * i + 1]
            call_dst[i] = base[r] + call_rows_flat[3 * i + 2]
            i += 1
    for g in range(n):
        call_ptr[g + 1] += call_ptr[g]
    return byte_class, trans, has_bytes, call_ptr, call_rule, call_dst


# --------------------------------------------------------------------------- runs


@nb.njit(cache=True, nogil=True)
def split_runs(bounds, trans, calls, call_syms, call_rows, n_rules, run_bytes):
    """A rule DFA's run edges taken out (see grammask.automata.rule_automata, ``_Runs``): the
    call columns of symbols ``n_rules + j`` are run j, of bytes ``run_bytes[j]``.

    Returns (status, bounds, trans, call_rows, src, run, dst): status 1 when the DFA has no
    run edge (the other values are the inputs), -1 when one cannot stay an edge (a state with
    two runs; the state before or after a run with an edge on its bytes; a run right after a
    run), else 0 with the classes cut at the runs' bytes, the call rows of rules only, and
    the run edges (state before, run, state after)."""
    n, k = trans.shape
    m = call_syms.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    first = m
    for col in range(m):
        if call_syms[col] >= n_rules:
            first = col
            break
    if first == m:
        return 1, bounds, trans, call_rows, empty, empty, empty
    cls = np.empty(256, dtype=np.int32)
    for c in range(k):
        for b in range(bounds[c], bounds[c + 1]):
            cls[b] = c
    # the classes holding some byte of each run (a run's edge then checks those only)
    n_runs = run_bytes.shape[0]
    run_cls = np.empty((n_runs, k), dtype=np.int32)
    n_run_cls = np.zeros(n_runs, dtype=np.int32)
    for j in range(n_runs):
        for c in range(k):
            for b in range(bounds[c], bounds[c + 1]):
                if run_bytes[j, b]:
                    run_cls[j, n_run_cls[j]] = c
                    n_run_cls[j] += 1
                    break
    n_edges = 0
    used = np.zeros(n_runs, dtype=np.bool_)
    for s in range(n):
        for col in range(first, m):
            t = calls[s, col]
            if t < 0:
                continue
            n_edges += 1
            j = call_syms[col] - n_rules
            used[j] = True
            for col2 in range(first, m):
                if col2 != col and calls[s, col2] >= 0:
                    return -1, bounds, trans, call_rows, empty, empty, empty
                if calls[t, col2] >= 0:
                    return -1, bounds, trans, call_rows, empty, empty, empty
            for i in range(n_run_cls[j]):
                c = run_cls[j, i]
                if trans[s, c] >= 0 or trans[t, c] >= 0:
                    return -1, bounds, trans, call_rows, empty, empty, empty
    src = np.empty(n_edges, dtype=np.int64)
    run = np.empty(n_edges, dtype=np.int64)
    dst = np.empty(n_edges, dtype=np.int64)
    e = 0
    for s in range(n):
        for col in range(first, m):
            if calls[s, col] >= 0:
                src[e] = s
                run[e] = call_syms[col] - n_rules
                dst[e] = calls[s, col]
                e += 1
    cut = np.zeros(257, dtype=np.bool_)
    for c in range(k + 1):
        cut[bounds[c]] = True
    for j in range(run_bytes.shape[0]):
        if used[j]:
            for b in range(1, 256):
                if run_bytes[j, b] != run_bytes[j, b - 1]:
                    cut[b] = True
    k2 = 0
    for b in range(257):
        if cut[b]:
            k2 += 1
    bounds2 = np.empty(k2, dtype=np.int32)
    i = 0
    for b in range(257):
        if cut[b]:
            bounds2[i] = b
            i += 1
    trans2 = np.empty((n, k2 - 1), dtype=np.int32)
    old_col = np.empty(k2 - 1, dtype=np.int32)
    for c in range(k2 - 1):
        old_col[c] = cls[bounds2[c]]
    for s in range(n):  # row by row: the tables are row-major
        for c in range(k2 - 1):
            trans2[s, c] = trans[s, old_col[c]]
    n_rows = 0
    for r in range(call_rows.shape[0] // 3):
        if call_rows[3 * r + 1] < n_rules:
            n_rows += 1
    rows = np.empty(3 * n_rows, dtype=call_rows.dtype)
    i = 0
    for r in range(call_rows.shape[0] // 3):
        if call_rows[3 * r + 1] < n_rules:
            rows[3 * i] = call_rows[3 * r]
            rows[3 * i + 1] = call_rows[3 * r + 1]
            rows[3 * i + 2] = call_rows[3 * r + 2]
            i += 1
    return 0, bounds2, trans2, rows, src, run, dst


# --------------------------------------------------------------------------- key complements


@nb.njit(cache=True, nogil=True)
def key_complement_rows(data, ends, r, fx_ptr, fx_rows, bd_rows, base):
    """The trie states of a key complement (see grammask.grammar.json_strings.keys_outside):
    the keys' canonical bytes ``data`` (key i ends at ``ends[i]``), over the tail automaton
    whose state ``y`` has the edges ``fx_rows[fx_ptr[y]:fx_ptr[y + 1]]`` (lo, hi, target) and
    whose character loop ``r`` has ``bd_rows`` at a character boundary.

    Trie node ``v`` is state ``base + v``: its child bytes lead to the children, its other
    bytes to where its tail state would go. Returns (status, rows int32[m, 4] sorted by
    source then byte, accepting int8[n_nodes]); status -1 when a key byte is not UTF-8 text
    at its place."""
    cap = data.shape[0] + 1
    first = np.full(cap, -1, dtype=np.int32)  # each node's children, sorted by byte
    sib = np.full(cap, -1, dtype=np.int32)
    byte = np.zeros(cap, dtype=np.int32)
    at = np.empty(cap, dtype=np.int32)  # the tail state of each node
    end = np.zeros(cap, dtype=np.bool_)
    at[0] = r
    n = 1
    w0 = 0
    for w in range(ends.shape[0]):
        node = 0
        for i in range(w0, ends[w]):
            b = np.int32(data[i])
            prev = -1
            c = first[node]
            while c >= 0 and byte[c] < b:
                prev = c
                c = sib[c]
            if c < 0 or byte[c] != b:
                y = at[node]
                state = -1
                if y == r and b < 0x80:
                    state = r  # a whole character (the special ones start with a backslash)
                else:
                    for j in range(fx_ptr[y], fx_ptr[y + 1]):
                        if fx_rows[j, 0] <= b <= fx_rows[j, 1]:
                            state = fx_rows[j, 2]
                            break
                if state < 0:
                    return -1, np.zeros((0, 4), dtype=np.int32), np.zeros(0, dtype=np.int8)
                new = n
                n += 1
                byte[new] = b
                at[new] = state
                sib[new] = c
                if prev < 0:
                    first[node] = new
                else:
                    sib[prev] = new
                c = new
            node = c
        end[node] = True
        w0 = ends[w]
    # rows: a node's tail edges cut around its child bytes, the child edges in between
    m = 0
    for v in range(n):
        k = 0
        c = first[v]
        while c >= 0:
            k += 1
            c = sib[c]
        src_n = bd_rows.shape[0] if at[v] == r else fx_ptr[at[v] + 1] - fx_ptr[at[v]]
        m += src_n + 2 * k
    rows = np.empty((m, 4), dtype=np.int32)
    acc = np.zeros(n, dtype=np.int8)
    m = 0
    for v in range(n):
        y = at[v]
        if y == r:
            src = bd_rows
        else:
            src = fx_rows[fx_ptr[y]:fx_ptr[y + 1]]
        c = first[v]
        for j in range(src.shape[0]):
            lo = src[j, 0]
            hi = src[j, 1]
            t = src[j, 2]
            while c >= 0 and byte[c] <= hi:
                b = byte[c]
                if b >= lo:
                    if b > lo:
                        rows[m, 0] = base + v
                        rows[m, 1] = lo
                        rows[m, 2] = b - 1
                        rows[m, 3] = t
                        m += 1
                    lo = b + 1
                rows[m, 0] = base + v
                rows[m, 1] = b
                rows[m, 2] = b
                rows[m, 3] = base + c
                m += 1
                c = sib[c]
            if lo <= hi:
                rows[m, 0] = base + v
                rows[m, 1] = lo
                rows[m, 2] = hi
                rows[m, 3] = t
                m += 1
        while c >= 0:  # a child byte past every tail edge (not reached for UTF-8 text)
            rows[m, 0] = base + v
            rows[m, 1] = byte[c]
            rows[m, 2] = byte[c]
            rows[m, 3] = base + c
            m += 1
            c = sib[c]
        acc[v] = 1 if y == r and not end[v] else 0
    return 0, rows[:m], acc
