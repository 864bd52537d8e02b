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

import numba as nb
import numpy as np
from numba.core import types
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
    n = tr[T_N]
    ln = tr[tr[T_ID_LEN] + token]
    if ln == 0:
        return E.REJECT
    if meta[E.M_NSETS] + ln + 1 >= sets.shape[0]:
        return E.FULL
    p = tr[tr[T_ID_PTR] + token]
    return E.push_bytes(g, items, sets, htab, meta, tok_bytes[p:p + ln])


@nb.njit(cache=True, nogil=True)
def m_can_end(g, buf, meta):
    items, sets, htab = views(buf, meta)
    return E.can_end(g, items, sets, meta)


@nb.njit(cache=True, nogil=True)
def m_can_continue(g, buf, meta):
    items, sets, htab = views(buf, meta)
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
# A batch fill makes one Numba call per thread for a whole range of matchers, so the threads
# run without the GIL for the whole range (a call per matcher would hand the GIL back and
# forth between them at every matcher). Each matcher is described by one row of int64
# addresses and lengths of its arrays (A_* columns); the caller keeps the arrays alive.

(A_G, A_G_LEN, A_BUF, A_BUF_LEN, A_META, A_META_LEN, A_TR, A_TR_LEN, A_TB, A_TB_LEN, A_CMETA,
 A_CMETA_ROWS, A_POOL, A_POOL_LEN, A_SLOTS, A_SLOTS_LEN, A_LCAP, A_ROW, A_ROW_LEN) = range(19)
A_COLUMNS = 19
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


@nb.njit(cache=True, nogil=True)
def m_fill_table(table, lo, hi, status):
    """``m_fill`` for the matchers of rows ``lo <= i < hi`` of an address table; writes each
    result to ``status[i]`` (SKIPPED for rows with no grammar address)."""
    for i in range(lo, hi):
        a = table[i]
        if a[A_G] == 0:
            status[i] = SKIPPED
            continue
        g = nb.carray(_ptr_i32(a[A_G]), (a[A_G_LEN],))
        buf = nb.carray(_ptr_i32(a[A_BUF]), (a[A_BUF_LEN],))
        meta = nb.carray(_ptr_i64(a[A_META]), (a[A_META_LEN],))
        tr = nb.carray(_ptr_i32(a[A_TR]), (a[A_TR_LEN],))
        tok_bytes = nb.carray(_ptr_u8(a[A_TB]), (a[A_TB_LEN],))
        cmeta = nb.carray(_ptr_i64(a[A_CMETA]), (a[A_CMETA_ROWS], 5))
        pool = nb.carray(_ptr_i32(a[A_POOL]), (a[A_POOL_LEN],))
        slots = nb.carray(_ptr_i32(a[A_SLOTS]), (a[A_SLOTS_LEN],))
        row = nb.carray(_ptr_i32(a[A_ROW]), (a[A_ROW_LEN],))
        status[i] = _fill(g, buf, meta, tr, tok_bytes, cmeta, pool, slots, a[A_LCAP], row)


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
