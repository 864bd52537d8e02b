"""Entry points of the matcher: one Numba call per matcher operation, few arguments.

A call from Python into Numba costs about 0.1-0.2 us per array argument it unboxes, so the
parser state lives in one int32 buffer ``buf`` described by an int64 ``meta`` array, and the
vocabulary index in one int32 blob ``tr`` (plus its bytes). These functions cut the views out
and call the kernels of :mod:`.earley` and :mod:`.mask_cache`.

``meta`` slots (beyond the parser's own, see :mod:`.earley`): capacities and offsets of the
regions of ``buf``: items (3 ints each) at 0, sets, the item hash table (3 ints per slot),
roots and uncertain-token scratch for the mask, the stop token ids; and ``M_MISSING``, the
state whose cache entry a fill needs; ``M_ALL_POSSIBLE``, whether a mask can allow every token
at all (not when the vocabulary has tokens no grammar produces), so the all-allowed check
of each fill is skipped when it cannot succeed.

Trie blob ``tr`` header: see ``T_*``.
"""

from __future__ import annotations

import platform

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import earley as E
from . import mask_cache as MC

# meta slots 0..3 belong to earley (n_sets, n_items, stamp, set start)
M_ITEMS_CAP, M_SETS_OFF, M_SETS_CAP, M_HTAB_OFF, M_HTAB_CAP = 4, 5, 6, 7, 8
M_ROOTS_OFF, M_ROOTS_CAP, M_UNC_OFF, M_UNC_CAP, M_STOP_OFF, M_NSTOP = 9, 10, 11, 12, 13, 14
M_MISSING, M_ALL_ALLOWED, M_ALL_POSSIBLE = 15, 16, 17
OK_ALL_ALLOWED = 2  # m_fill: OK, and every token is allowed
META_SIZE = 18

# trie blob header
T_N, T_VOCAB, T_TOK_PTR, T_SORTED, T_LCP, T_SKIP, T_ID_PTR, T_ID_LEN, T_UNIVERSE = range(9)
T_HEADER = 16


def pack_trie(tok_ptr, sorted_ids, lcp, skip, id_ptr, id_len, universe, vocab_size):
    """One int32 blob for the vocabulary index; returns (blob, views of each part)."""
    parts = [tok_ptr, sorted_ids, lcp, skip, id_ptr, id_len, universe]
    blob = np.zeros(T_HEADER + sum(len(p) for p in parts), dtype=np.int32)
    blob[T_N] = len(sorted_ids)
    blob[T_VOCAB] = vocab_size
    pos = T_HEADER
    views = []
    for slot, p in zip((T_TOK_PTR, T_SORTED, T_LCP, T_SKIP, T_ID_PTR, T_ID_LEN, T_UNIVERSE),
                       parts):
        blob[slot] = pos
        blob[pos:pos + len(p)] = p
        views.append(blob[pos:pos + len(p)])
        pos += len(p)
    return blob, views


def layout_state(items_cap: int, sets_cap: int, htab_cap: int, roots_cap: int, unc_cap: int,
                 stop_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fresh (buf, meta) pair with the given capacities (htab_cap a power of two)."""
    meta = np.zeros(META_SIZE, dtype=np.int64)
    pos = 3 * items_cap
    meta[M_ITEMS_CAP] = items_cap
    meta[M_SETS_OFF] = pos
    meta[M_SETS_CAP] = sets_cap
    pos += sets_cap
    meta[M_HTAB_OFF] = pos
    meta[M_HTAB_CAP] = htab_cap
    pos += 3 * htab_cap
    meta[M_ROOTS_OFF] = pos
    meta[M_ROOTS_CAP] = roots_cap
    pos += roots_cap
    meta[M_UNC_OFF] = pos
    meta[M_UNC_CAP] = unc_cap
    pos += unc_cap
    meta[M_STOP_OFF] = pos
    meta[M_NSTOP] = len(stop_ids)
    pos += len(stop_ids)
    buf = np.zeros(pos, dtype=np.int32)
    buf[meta[M_HTAB_OFF]:meta[M_HTAB_OFF] + 3 * htab_cap] = -1
    buf[meta[M_STOP_OFF]:pos] = stop_ids
    meta[M_ALL_POSSIBLE] = 1  # the matcher clears it when some token can never be allowed
    return buf, meta


@nb.njit(cache=True, nogil=True, inline="always")
def views(buf, meta):
    items = buf[:3 * meta[M_ITEMS_CAP]].reshape((meta[M_ITEMS_CAP], 3))
    so = meta[M_SETS_OFF]
    sets = buf[so:so + meta[M_SETS_CAP]]
    ho = meta[M_HTAB_OFF]
    htab = buf[ho:ho + 3 * meta[M_HTAB_CAP]].reshape((meta[M_HTAB_CAP], 3))
    return items, sets, htab


@nb.njit(cache=True, nogil=True, inline="always")
def _trie_part(tr, slot, length):
    o = tr[slot]
    return tr[o:o + length]


@nb.njit(cache=True, nogil=True)
def m_reset(g, buf, meta):
    items, sets, htab = views(buf, meta)
    return E.init_state(g, items, sets, htab, meta)


@nb.njit(cache=True, nogil=True)
def m_accept_bytes(g, buf, meta, data):
    """Scans ``data`` (all or nothing). OK, REJECT or FULL."""
    items, sets, htab = views(buf, meta)
    if meta[E.M_NSETS] + data.shape[0] + 1 >= sets.shape[0]:
        return E.FULL
    return E.push_bytes(g, items, sets, htab, meta, data)


@nb.njit(cache=True, nogil=True)
def m_accept_token(g, buf, meta, tr, tok_bytes, token):
    """Scans the bytes of a (non-special, in-range) token. OK, REJECT or FULL."""
    items, sets, htab = views(buf, meta)
    ln = tr[tr[T_ID_LEN] + token]
    if ln == 0:
        return E.REJECT
    if meta[E.M_NSETS] + ln + 1 >= sets.shape[0]:
        return E.FULL
    p = tr[tr[T_ID_PTR] + token]
    return E.push_bytes(g, items, sets, htab, meta, tok_bytes[p:p + ln])


@nb.njit(cache=True, nogil=True)
def m_can_end(g, buf, meta):
    items, sets, _ = views(buf, meta)
    return E.can_end(g, items, sets, meta)


@nb.njit(cache=True, nogil=True)
def m_can_continue(g, buf, meta):
    items, sets, _ = views(buf, meta)
    k = meta[E.M_NSETS] - 1
    for m in range(sets[k], sets[k + 1]):
        if E.state_flags(g, items[m, 0]) & E.F_BYTES:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def m_pop_to(buf, meta, n_sets):
    so = meta[M_SETS_OFF]
    sets = buf[so:so + meta[M_SETS_CAP]]
    E.pop_to(sets, meta, n_sets)


@nb.njit(cache=True, nogil=True)
def m_jump_forward(g, buf, meta, out):
    items, sets, htab = views(buf, meta)
    if meta[E.M_NSETS] + out.shape[0] + 1 >= sets.shape[0]:
        return E.FULL
    return E.jump_forward(g, items, sets, htab, meta, out)


@nb.njit(cache=True, nogil=True)
def _all_allowed(mask_row, vocab):
    full = vocab >> 5
    for w in range(full):
        if mask_row[w] != -1:
            return False
    rest = vocab & 31
    if rest:
        want = (np.int64(1) << rest) - 1
        if (np.int64(mask_row[full]) & want) != want:
            return False
    return True


@nb.njit(cache=True, nogil=True, inline="always")
def _fill(g, buf, meta, tr, tok_bytes, cmeta, pool, slots, lcap, mask_row):
    items, sets, htab = views(buf, meta)
    n = tr[T_N]
    vocab = tr[T_VOCAB]
    tok_ptr = _trie_part(tr, T_TOK_PTR, n + 1)
    sorted_ids = _trie_part(tr, T_SORTED, n)
    universe = _trie_part(tr, T_UNIVERSE, (vocab + 31) >> 5)
    ro = meta[M_ROOTS_OFF]
    roots = buf[ro:ro + meta[M_ROOTS_CAP]]
    uo = meta[M_UNC_OFF]
    unc = buf[uo:uo + meta[M_UNC_CAP]]
    to = meta[M_STOP_OFF]
    stops = buf[to:to + meta[M_NSTOP]]
    missing = meta[M_MISSING:M_MISSING + 1]
    r = MC.fill_mask_cached(g, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids, cmeta,
                            pool, slots, lcap, universe, stops, mask_row, roots, unc, missing)
    if r == E.OK:
        if meta[M_ALL_POSSIBLE] and _all_allowed(mask_row, vocab):
            meta[M_ALL_ALLOWED] = 1
            return OK_ALL_ALLOWED
        meta[M_ALL_ALLOWED] = 0
    return r


@nb.njit(cache=True, nogil=True)
def m_fill(g, buf, meta, tr, tok_bytes, cmeta, pool, slots, lcap, mask_row):
    """The next-token mask from the cache. OK, OK_ALL_ALLOWED (every token is allowed; also
    ``meta[M_ALL_ALLOWED]``), FULL, or NEED_CACHE (state in ``meta[M_MISSING]``)."""
    return _fill(g, buf, meta, tr, tok_bytes, cmeta, pool, slots, lcap, mask_row)


# --------------------------------------------------------------------------- batches
#
# A batch fill makes one Numba call for a whole batch, so the threads run without the GIL
# from the first row to the last (a call per matcher would hand the GIL back and forth
# between them at every matcher). Each matcher is described by one row of int64 addresses and
# lengths of its arrays (A_* columns, made by the matcher and kept while its arrays stay); the
# caller keeps the arrays alive. The bitmask row of matcher i is ``rows[i]`` of one int32
# bitmask given by its address, row stride (bytes) and row length (words).

(A_G, A_G_LEN, A_BUF, A_BUF_LEN, A_META, A_META_LEN, A_TR, A_TR_LEN, A_TB, A_TB_LEN, A_CMETA,
 A_CMETA_ROWS, A_POOL, A_POOL_LEN, A_SLOTS, A_SLOTS_LEN, A_LCAP, A_WORDS) = range(18)
A_COLUMNS = 18
SKIPPED = 3  # m_fill_table: the row was not filled (handled by the caller)


def _pointer_intrinsic(dtype):
    @intrinsic
    def as_pointer(typingctx, address):
        if not isinstance(address, types.Integer):
            return None
        sig = types.CPointer(dtype)(address)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    return as_pointer


_ptr_i32 = _pointer_intrinsic(types.int32)
_ptr_i64 = _pointer_intrinsic(types.int64)
_ptr_u8 = _pointer_intrinsic(types.uint8)


def _element_pointer(context, builder, signature, args):
    arrty = signature.args[0]
    arr = context.make_array(arrty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, arrty, arr, [args[1]])


def _i64_array(array, index):
    return (isinstance(array, types.Array) and array.dtype == types.int64
            and isinstance(index, types.Integer))


@intrinsic
def _fetch_add(typingctx, array, index, value):
    """``array[index] += value`` as one atomic operation; returns the value before."""
    if not (_i64_array(array, index) and isinstance(value, types.Integer)):
        return None
    sig = types.int64(array, index, value)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", _element_pointer(context, builder, signature, args), v,
                                  "seq_cst")

    return sig, codegen


@nb.njit(cache=True, nogil=True)
def _fill_table_row(table, i, rows, bm_addr, bm_stride, bm_words):
    a = table[i]
    if a[A_G] == 0 or a[A_WORDS] > bm_words:
        return SKIPPED
    g = nb.carray(_ptr_i32(a[A_G]), (a[A_G_LEN],))
    buf = nb.carray(_ptr_i32(a[A_BUF]), (a[A_BUF_LEN],))
    meta = nb.carray(_ptr_i64(a[A_META]), (a[A_META_LEN],))
    tr = nb.carray(_ptr_i32(a[A_TR]), (a[A_TR_LEN],))
    tok_bytes = nb.carray(_ptr_u8(a[A_TB]), (a[A_TB_LEN],))
    cmeta = nb.carray(_ptr_i64(a[A_CMETA]), (a[A_CMETA_ROWS], 5))
    pool = nb.carray(_ptr_i32(a[A_POOL]), (a[A_POOL_LEN],))
    slots = nb.carray(_ptr_i32(a[A_SLOTS]), (a[A_SLOTS_LEN],))
    row = nb.carray(_ptr_i32(bm_addr + rows[i] * bm_stride), (a[A_WORDS],))
    return _fill(g, buf, meta, tr, tok_bytes, cmeta, pool, slots, a[A_LCAP], row)


@nb.njit(cache=True, nogil=True)
def m_fill_table(table, rows, bm_addr, bm_stride, bm_words, status):
    """``m_fill`` for every matcher of an address table, into bitmask row ``rows[i]``; writes
    each result to ``status[i]`` (SKIPPED for rows with no grammar address, or a vocabulary
    wider than the bitmask). Returns how many rows were not filled (status neither OK nor
    OK_ALL_ALLOWED)."""
    for i in range(table.shape[0]):
        status[i] = _fill_table_row(table, i, rows, bm_addr, bm_stride, bm_words)
    return _count_unfilled(status)


@nb.njit(cache=True, nogil=True)
def _count_unfilled(status):
    c = 0
    for i in range(status.shape[0]):
        if status[i] != E.OK and status[i] != OK_ALL_ALLOWED:
            c += 1
    return c


# ---------------------------------------------------------------- the batch fill pool
#
# Worker threads that stay in a Numba call, without the GIL, and take rows of the jobs the
# filling thread posts in a shared int64 control array ``ctrl`` (one cache line per slot):
#
#   P_CLAIM   the claim word: job number (23 bits) | lo (20 bits) | hi (20 bits), the rows
#             lo <= i < hi not taken yet; a row is taken by a compare-and-swap of the whole
#             word (lo + 1 or hi - 1), so a thread late from an earlier job cannot take a row
#             of the new one;
#   P_DONE    rows of the current job filled (by anyone);
#   P_SLEEPING workers that went back to Python to sleep (the filling thread then wakes them);
#   P_STOP    set to make the workers return for good;
#   P_JOB..   the job: addresses of the table, rows and status arrays, the bitmask's address,
#             row stride and words, the number of rows; written before the claim word that
#             publishes them.
#
# The filling thread fills rows too, and waits only for rows taken by others: a worker still
# waking up when the rows run out costs nothing.

P_STRIDE = 8
P_CLAIM, P_DONE, P_SLEEPING, P_STOP, P_SEQ, P_JOB = (k * P_STRIDE for k in range(6))
P_TABLE, P_ROWS, P_STATUS, P_BM, P_BM_STRIDE, P_BM_WORDS, P_N = (P_JOB + k for k in range(7))
P_SIZE = P_JOB + P_STRIDE
_ROW_BITS = 20
_ROW_MASK = (1 << _ROW_BITS) - 1
POOL_MAX_ROWS = _ROW_MASK  # rows of one job: lo and hi fit the claim word


@intrinsic
def _load_acquire(typingctx, array, index):
    """``array[index]``, read atomically (acquire)."""
    if not _i64_array(array, index):
        return None
    sig = types.int64(array, index)

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_element_pointer(context, builder, signature, args),
                                   "acquire", 8)

    return sig, codegen


@intrinsic
def _store_release(typingctx, array, index, value):
    """``array[index] = value``, written atomically (release: earlier writes are seen first)."""
    if not (_i64_array(array, index) and isinstance(value, types.Integer)):
        return None
    sig = types.void(array, index, value)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(v, _element_pointer(context, builder, signature, args),
                             "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _cas(typingctx, array, index, expected, value):
    """Sets ``array[index] = value`` if it equals ``expected``, atomically; True if it did."""
    if not (_i64_array(array, index) and isinstance(expected, types.Integer)
            and isinstance(value, types.Integer)):
        return None
    sig = types.boolean(array, index, expected, value)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature, args)
        e = context.cast(builder, args[2], signature.args[2], types.int64)
        v = context.cast(builder, args[3], signature.args[3], types.int64)
        pair = builder.cmpxchg(ptr, e, v, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return sig, codegen


_PAUSE_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _cpu_relax(typingctx):
    """A spin-wait hint to the CPU (x86 ``pause``; nothing elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _PAUSE_X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(cache=True, nogil=True)
def _serve_claims(ctrl, from_back):
    """Fills rows of the posted job while any is left to take, from the front (the posting
    thread) or the back (the workers: each side meets the rows it had last time, still in its
    core's cache when the batch is the same); returns how many it filled."""
    done = 0
    while True:
        w = _load_acquire(ctrl, P_CLAIM)
        lo = (w >> _ROW_BITS) & _ROW_MASK
        hi = w & _ROW_MASK
        if lo >= hi:
            return done
        if from_back:
            i = hi - 1
            if not _cas(ctrl, P_CLAIM, w, w - 1):
                continue
        else:
            i = lo
            if not _cas(ctrl, P_CLAIM, w, w + (1 << _ROW_BITS)):
                continue
        # the job cannot end before this row is filled: its description stays as it is
        n = ctrl[P_N]
        table = nb.carray(_ptr_i64(ctrl[P_TABLE]), (n, A_COLUMNS))
        rows = nb.carray(_ptr_i64(ctrl[P_ROWS]), (n,))
        status = nb.carray(_ptr_i32(ctrl[P_STATUS]), (n,))
        status[i] = _fill_table_row(table, i, rows, ctrl[P_BM], ctrl[P_BM_STRIDE],
                                    ctrl[P_BM_WORDS])
        _fetch_add(ctrl, P_DONE, 1)
        done += 1


@nb.njit(cache=True, nogil=True)
def pool_serve(ctrl, spin):
    """A worker's loop: fills rows of posted jobs until none has come for ``spin`` empty
    polls; then counts itself in ``P_SLEEPING`` and returns 0 (the caller sleeps until woken
    and calls again), or 1 once ``P_STOP`` is set."""
    idle = 0
    while True:
        if _load_acquire(ctrl, P_STOP):
            return 1
        if _serve_claims(ctrl, True):
            idle = 0
            continue
        idle += 1
        if idle > spin:
            _fetch_add(ctrl, P_SLEEPING, 1)
            # a job posted just before the count went up may have found no sleeper to wake
            w = _load_acquire(ctrl, P_CLAIM)
            if ((w >> _ROW_BITS) & _ROW_MASK) < (w & _ROW_MASK):
                _fetch_add(ctrl, P_SLEEPING, -1)
                idle = 0
                continue
            return 0
        _cpu_relax()


@nb.njit(cache=True, nogil=True)
def pool_woken(ctrl):
    """A worker back from sleep: no longer counted in ``P_SLEEPING``."""
    _fetch_add(ctrl, P_SLEEPING, -1)


@nb.njit(cache=True, nogil=True)
def pool_spin(ctrl, polls):
    """``polls`` empty polls of the claim word, as a worker waits (to time a poll)."""
    c = 0
    for _ in range(polls):
        c += _load_acquire(ctrl, P_CLAIM) & 1
        _cpu_relax()
    return c


@nb.njit(cache=True, nogil=True)
def pool_fill(ctrl, table, rows, bm_addr, bm_stride, bm_words, status):
    """``m_fill_table`` with the pool's workers: posts the job, fills rows until none is left,
    waits for the rows others took. One filling thread at a time per ``ctrl``. Returns how
    many rows were not filled (as ``m_fill_table``)."""
    n = table.shape[0]
    seq = (ctrl[P_SEQ] + 1) & 0x7FFFFF
    ctrl[P_SEQ] = seq
    ctrl[P_TABLE] = table.ctypes.data
    ctrl[P_ROWS] = rows.ctypes.data
    ctrl[P_STATUS] = status.ctypes.data
    ctrl[P_BM] = bm_addr
    ctrl[P_BM_STRIDE] = bm_stride
    ctrl[P_BM_WORDS] = bm_words
    ctrl[P_N] = n
    _store_release(ctrl, P_DONE, 0)
    _store_release(ctrl, P_CLAIM, (seq << (2 * _ROW_BITS)) | n)
    _serve_claims(ctrl, False)
    while _load_acquire(ctrl, P_DONE) < n:
        _cpu_relax()
    return _count_unfilled(status)


@nb.njit(cache=True, nogil=True)
def m_fill_uncached(g, buf, meta, tr, tok_bytes, mask_row):
    """The next-token mask by a full trie walk (no cache). OK or FULL."""
    items, sets, htab = views(buf, meta)
    n = tr[T_N]
    tok_ptr = _trie_part(tr, T_TOK_PTR, n + 1)
    sorted_ids = _trie_part(tr, T_SORTED, n)
    lcp = _trie_part(tr, T_LCP, n)
    skip = _trie_part(tr, T_SKIP, tok_ptr[n])
    to = meta[M_STOP_OFF]
    stops = buf[to:to + meta[M_NSTOP]]
    return E.fill_mask(g, items, sets, htab, meta, tok_bytes, tok_ptr, sorted_ids, lcp, skip,
                       stops, mask_row)
