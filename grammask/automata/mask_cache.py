"""The adaptive token-mask cache of one compiled grammar: built lazily, shared by matchers.

A state's entry is computed the first time a matcher needs it (see
:mod:`grammask.mask_kernels.mask_cache` for what an entry holds) and kept in an
append-only pool, so matchers in other threads keep reading while entries are added. Each
accepted set is stored in the smallest of three forms: accepted ids, rejected ids, bitset.
"""

from __future__ import annotations

import threading

import numpy as np

from ..mask_kernels import earley as E
from ..mask_kernels import mask_cache as MC
from .rule_automata import RuleAutomata
from .token_trie import TokenTrie, shared_store

#: Virtual states of a counter block share cache entries for tokens up to this many bytes;
#: longer tokens are checked against the live state (few tokens are longer than 32 bytes).
LCAP = 32
#: Shared loop walks kept per vocabulary (each about a bitmask row and a few lists).
_SHARED_MAX = 2048


class MaskCache:
    """Per-state token masks of one (grammar, vocabulary) pair."""

    #: Walk shortcuts: keep the walks of subtrees entered in loops for later walks, and step
    #: the DFA through states with calls on bytes their calls cannot take (off: for tests and
    #: comparisons; the entries are the same either way).
    subtree_memo = True

    def __init__(self, automata: RuleAutomata, trie: TokenTrie):
        self._a = automata
        self._trie = trie
        g = automata.blob
        self._g = g
        n_dense = int(g[E.H_NDENSE])
        self._rows = n_dense  # rows in use: dense states, then virtual-state entries
        self.pool = np.empty(4096, dtype=np.int32)  # read only as far as _used
        self._used = 0
        self._lock = threading.Lock()
        self._follow: np.ndarray | None = None
        words = (trie.vocab_size + 31) // 32
        ids = trie.sorted_ids
        self.universe = trie.universe
        self._universe_count = len(ids)
        self._n_ids = max(1, len(ids))  # rows of the token-sized scratch buffers
        self._acc_bits = np.zeros(words, dtype=np.int32)
        self._zeros = _scratch("zeros", (words,))  # all zero: never written
        self._max_depth = trie.max_token_len
        self._n_dense = n_dense
        self._scratch = None  # parser buffers for Earley-based builds
        self._scc = None  # MC.state_components: for shared walks and the subtree memo
        self._memo = None  # the subtree memo of full walks (see mask_kernels.mask_cache)
        self._canon = np.full(n_dense, -1, dtype=np.int32)
        self._sig = np.empty(MC.SCC_MAX * 520, dtype=np.int32)
        self.n_built = 0
        self._through_stack: list[int] = []  # states whose call-through build is under way
        self._run_bytes: dict[int, np.ndarray] = {}  # a run's inner row -> its bytes
        # counter blocks: one slot table each, (inner states x (LCAP+3)^2) entries; the
        # kernels get LCAP and the longest token's length packed as ``lcap``
        self.lcap = MC.pack_limits(LCAP, max(self._max_depth, LCAP + 1))
        n_blocks = int(g[E.H_NBLOCKS])
        width = (LCAP + 3) ** 2
        rows = g[g[E.H_BLOCKS]:g[E.H_BLOCKS] + n_blocks * E.BLOCK_ROW].reshape(-1, E.BLOCK_ROW)
        # a run (see mask_kernels.earley) has one entry per count instead
        sizes = np.where(rows[:, E.B_CONT] >= 0, rows[:, E.B_MAX] + 1,
                         rows[:, E.B_QQ] * width).astype(np.int64)
        ends = n_blocks + 1 + np.cumsum(sizes)
        pos = int(ends[-1]) if n_blocks else n_blocks + 1
        slots = np.full(pos, -1, dtype=np.int32)
        slots[0] = n_blocks + 1
        slots[1:n_blocks + 1] = ends  # block b's slots start at slots[b], end at slots[b + 1]
        self.slots = slots
        # rows for virtual-state entries after the dense states': room for all the slots up to
        # _VIRTUAL_ROWS0, then the virtual part doubles (growing copies the dense rows too:
        # 13 MB for a 330k-state grammar, tens of ms of page faults in the middle of a fill)
        virtual = min(max(16, pos - n_blocks - 1), _VIRTUAL_ROWS0) if n_blocks else 16
        self.cmeta = np.zeros((n_dense + virtual, 5), dtype=np.int64)

    @property
    def memory_size_bytes(self) -> int:
        memo = 0 if self._memo is None else sum(
            self._memo[k].nbytes for k in (MC.MT_TAB, MC.MT_POOL, MC.MT_CLS, MC.MT_CTAB,
                                           MC.MT_CROW, MC.MT_CFIRST))
        return int(self.cmeta.nbytes + self._used * 4 + memo)

    # ------------------------------------------------------------------ building

    def ensure(self, state: int) -> None:
        """Builds the entry of ``state`` unless it exists."""
        with self._lock:
            self._ensure(state)

    def _ensure(self, state: int) -> int:
        """``ensure`` with the lock held; returns the state's cmeta row."""
        if state < self._n_dense:
            if self.cmeta[state, MC.C_KIND] == MC.K_NONE:
                self._build(state, state)
            return state
        bi, idx = MC.slot_index(self._g, state, self.lcap)
        where = int(self.slots[bi]) + int(idx)
        row = int(self.slots[where])
        if row >= 0:
            return row
        row = self._new_row()
        self._build(state, row)
        self.slots[where] = row  # published last: readers then find a complete row
        return row

    def _new_row(self) -> int:
        if self._rows >= self.cmeta.shape[0]:
            virtual = self.cmeta.shape[0] - self._n_dense
            cmeta = np.zeros((self._n_dense + 2 * virtual, 5), dtype=np.int64)
            cmeta[: self.cmeta.shape[0]] = self.cmeta
            self.cmeta = cmeta
        self._rows += 1
        return self._rows - 1

    def _build(self, s: int, row: int) -> None:
        g = self._g
        f = int(E.state_flags(g, s))
        if not f & (E.F_BYTES | E.F_CALLS):
            MC.store_cache_row(self.cmeta, row, MC.K_EMPTY, 0, 0, 0, 0)
            return
        trie = self._trie
        unc_out, ids_out = _scratch("unc", (self._n_ids,)), _scratch("ids", (self._n_ids,))
        rule = int(E.state_rule(g, s))
        follow = self._follow_of(rule)
        long_unc = LCAP if s >= self._n_dense and MC.slot_is_clamped(g, s, self.lcap) else 0
        through, skip_bytes = (self._through_row(s) if s < self._n_dense
                               else self._run_row(s))
        if self._scratch is None:
            self._scratch = _new_scratch()
        while True:
            items, sets, htab, meta = self._scratch
            if sets.shape[0] < self._max_depth + 8:
                self._scratch = _grow(self._scratch, self._max_depth + 8)
                continue
            n_unc = E.FULL
            shared = (self._shared_walk(s, follow) if s < self._n_dense and through < 0
                      else None)
            if through >= 0:
                n_unc = MC.build_through(g, s, through, skip_bytes, self.cmeta, self.pool,
                                         self.universe,
                                         items, sets, htab, meta, trie.tok_bytes,
                                         trie.tok_ptr, trie.sorted_ids, trie.lcp, trie.skip,
                                         follow, self._acc_bits, unc_out,
                                         self._max_depth)
            elif shared is not None:
                acc_in, unc_in, exits, order = shared
                self._acc_bits[:] = acc_in
                unc_out[:len(unc_in)] = unc_in
                n_unc = MC.apply_exits(g, order, exits, len(exits), items, sets, htab, meta,
                                       trie.tok_bytes, trie.tok_ptr, trie.sorted_ids, trie.lcp,
                                       trie.skip, follow, self._acc_bits, unc_out,
                                       len(unc_in), self._max_depth)
                if n_unc != E.FULL and len(exits) and len(unc_in) and n_unc > len(unc_in):
                    unc_out[:n_unc].sort()
            else:
                n_unc = MC.build_cache(g, s, items, sets, htab, meta, trie.tok_bytes,
                                       trie.tok_ptr, trie.sorted_ids, trie.lcp, trie.skip,
                                       follow, self._acc_bits, unc_out, self._max_depth,
                                       long_unc, self._memo_arrays(), self._rex())
                self._memo_room()
            if n_unc != E.FULL:
                break
            self._scratch = _grow(self._scratch)
        bits = self._acc_bits
        n_words = bits.shape[0]
        n_acc = int(MC.popcount_words(bits))
        n_rej = self._universe_count - n_acc
        if n_acc <= n_words and n_acc <= n_rej:
            data = ids_out[:MC.bits_to_ids(bits, self._zeros, ids_out)]
            kind = MC.K_ACC
        elif n_rej <= n_words // 16:
            # the universe minus the accepted: its bits, as ids
            data = ids_out[:MC.bits_to_ids(self.universe, bits, ids_out)]
            kind = MC.K_REJ
        else:
            kind, data = MC.K_BITS, bits
        unc = unc_out[:n_unc]
        acc_off = self._append(data)
        unc_off = self._append(unc)
        MC.store_cache_row(self.cmeta, row, kind, acc_off, len(data), unc_off, n_unc)
        self.n_built += 1

    def _rex(self) -> np.ndarray:
        """build_cache's scratch rows (one per token)."""
        return _scratch("rex", (self._n_ids, 2))

    def _through_row(self, s: int) -> tuple[int, np.ndarray | None]:
        """For a state whose only edge is one rule call: the cmeta row of that rule's start
        state, built first if needed, and the first bytes of tokens that may skip the rule
        (see mask_kernels.mask_cache, "call-through"); else (-1, None)."""
        g = self._g
        r = int(MC.call_through_rule(g, s))
        if r < 0:
            return -1, None
        t = int(g[int(g[E.H_RULE_START]) + r])
        if t in self._through_stack or len(self._through_stack) >= 64:
            return -1, None
        self._through_stack.append(s)
        try:
            row = self._ensure(t)
        finally:
            self._through_stack.pop()
        nullable = g[int(g[E.H_NULLABLE]) + r] != 0
        return row, (self._follow_of(r) if nullable else _NO_BYTES)

    def _run_row(self, s: int) -> tuple[int, np.ndarray | None]:
        """For a run's virtual state (see mask_kernels.earley, "Runs"): the cmeta row of the
        state after the run, built first if needed, and the run's bytes. A token not starting
        with one of them takes the same path from both states (the state after has no edge on
        them), so the entry is that state's, with the tokens that start with a run byte walked
        from ``s`` (as for a call-through); else (-1, None)."""
        g = self._g
        b = int(E.block_of(g, s))
        t = int(g[b + E.B_CONT])
        if t < 0:
            return -1, None
        inner = int(g[b + E.B_INNER])
        run_bytes = self._run_bytes.get(inner)
        if run_bytes is None:
            classes = g[inner:inner + int(g[E.H_NCLASSES])] == E.INNER_FINAL
            run_bytes = self._run_bytes[inner] = classes[g[E.HEADER:E.HEADER + 256]]
        return self._ensure(t), run_bytes

    def _shared_walk(self, s: int, follow: np.ndarray):
        """For a state inside a loop of its automaton: the walk inside the loop, shared with
        every state (of any grammar of this vocabulary) whose loop has the same shape; with
        this state's canonical numbering. None when the state is not in a loop, or the loop
        is large or calls rules."""
        g = self._g
        if self._scc is None:
            self._scc = MC.state_components(g)
        comp, cyclic, has_calls = self._scc[:3]
        c = int(comp[s])
        if not cyclic[c] or has_calls[c]:
            return None
        order = np.empty(MC.SCC_MAX, dtype=np.int32)
        canon = self._canon
        sig = self._sig
        n_sig, n_order = MC.scc_signature(g, s, comp, order, canon, sig)
        if n_sig < 0:
            canon[order[:n_order]] = -1
            return None
        # the follow set matters only where the walk can end the rule inside the component:
        # a string's character loop is shared by every grammar, whatever follows the string
        key = sig[:n_sig].tobytes()
        if MC.any_accepting(g, order, n_order):
            key += np.packbits(follow).tobytes()
        trie = self._trie
        store, lock = shared_store(trie)
        with lock:
            hit = store.get(key)
        if hit is None:
            exits, unc_out = _scratch("exits", (self._n_ids, 5)), _scratch("unc", (self._n_ids,))
            n_unc, n_exits = MC.scc_walk(g, s, comp, canon, trie.tok_bytes, trie.tok_ptr,
                                         trie.sorted_ids, trie.lcp, trie.skip, follow,
                                         self._acc_bits, unc_out, exits, self._max_depth)
            hit = (self._acc_bits.copy(), unc_out[:n_unc].copy(), exits[:n_exits].copy())
            with lock:
                if len(store) >= _SHARED_MAX:
                    store.pop(next(iter(store)))
                store[key] = hit
        canon[order[:n_order]] = -1
        return hit + (order[:n_order].copy(),)

    def _append(self, data: np.ndarray) -> int:
        need = self._used + len(data)
        if need > self.pool.shape[0]:
            size = self.pool.shape[0]
            while size < need:
                size *= 2
            pool = np.empty(size, dtype=np.int32)
            pool[: self._used] = self.pool[: self._used]
            self.pool = pool  # readers holding the old pool still see valid entries
        off = self._used
        self.pool[off:need] = data
        self._used = need
        return off

    # ------------------------------------------------------------------ follow sets

    def _memo_arrays(self):
        """The subtree memo's arrays (see mask_kernels.mask_cache, "subtree memo"), made on
        first use; arrays that keep nothing when ``subtree_memo`` is off."""
        if not self.subtree_memo:
            return MC.no_memo()[0]
        if self._memo is None:
            if self._scc is None:
                self._scc = MC.state_components(self._g)
            comp, _, _, cls, ccap, crow, n_calls = self._scc
            self._memo = [np.full((_MEMO_TABLE0, 4), -1, dtype=np.int64),
                          np.empty(_MEMO_POOL0, dtype=np.int32), np.zeros(4, dtype=np.int64),
                          cls, comp, self._canon, np.empty(MC.SCC_MAX, dtype=np.int32),
                          self._sig, np.empty_like(self._sig),
                          np.full((ccap, 2), -1, dtype=np.int64), crow,
                          np.zeros((n_calls, 9), dtype=np.int32)]
        return tuple(self._memo)

    def _memo_room(self) -> None:
        """Grows the memo after a build that filled a quarter of its table or half of its
        pool (a full one only stops keeping subtrees), up to _MEMO_POOL_MAX words."""
        memo = self._memo
        if memo is None:
            return
        tab, pool, mmeta = memo[MC.MT_TAB], memo[MC.MT_POOL], memo[MC.MT_META]
        if 8 * (int(mmeta[MC.MEMO_ENTRIES]) + 8) > tab.shape[0]:
            memo[MC.MT_TAB] = MC.memo_rehash(tab, np.full((tab.shape[0] * 2, 4), -1,
                                                          dtype=np.int64))
        if 2 * int(mmeta[MC.MEMO_USED]) > pool.shape[0] and 2 * pool.shape[0] <= _MEMO_POOL_MAX:
            grown = np.empty(pool.shape[0] * 2, dtype=np.int32)  # written before read
            grown[:pool.shape[0]] = pool
            memo[MC.MT_POOL] = grown

    def _follow_of(self, rule: int) -> np.ndarray:
        if self._follow is None:
            self._follow = compute_follow(self._g)
        return self._follow[rule]


_NO_BYTES = np.zeros(256, dtype=bool)
_VIRTUAL_ROWS0 = 4096
_MEMO_TABLE0 = 256
_MEMO_POOL0 = 1 << 14
_MEMO_POOL_MAX = 1 << 22  # words (16 MiB)

_LOCAL = threading.local()


def _scratch(name: str, shape: tuple) -> np.ndarray:
    """An int32 array of ``shape`` for this thread, shared by all its mask caches: the
    vocabulary-sized kernel buffers, read only as far as a kernel wrote them in the same build
    (a thread's builds never overlap: a build first finishes the builds it depends on). Made
    once per thread rather than per grammar, so their pages are not faulted in again by every
    grammar's first fills (0.5-2.5 MB each). ``"zeros"`` stays zero (never written)."""
    store = getattr(_LOCAL, "arrays", None)
    if store is None:
        store = _LOCAL.arrays = {}
    a = store.get((name, shape))
    if a is None:
        a = store[(name, shape)] = np.zeros(shape, dtype=np.int32)
    return a


def _new_scratch():
    return (np.zeros((1024, 3), dtype=np.int32), np.zeros(512, dtype=np.int32),
            new_htab(256), np.zeros(4, dtype=np.int64))


def new_htab(size: int) -> np.ndarray:
    """An empty item hash table for the Earley kernels (size a power of two)."""
    return np.full((size, 3), -1, dtype=np.int32)


def _grow(scratch, min_sets: int = 0):
    items, sets, htab, meta = scratch
    new_items = np.zeros((items.shape[0] * 2, 3), dtype=np.int32)
    new_sets = np.zeros(max(sets.shape[0] * 2, min_sets), dtype=np.int32)
    return new_items, new_sets, new_htab(htab.shape[0] * 2), meta


def compute_follow(g: np.ndarray) -> np.ndarray:
    """``follow[r, b]``: whether byte ``b`` can come right after rule ``r`` completes, in some
    context of the grammar (a bool[n_rules, 256] array; :func:`MC.follow_sets`)."""
    return MC.follow_sets(g)
