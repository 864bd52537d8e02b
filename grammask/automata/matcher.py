"""GrammarMatcher: the per-request parser state, token acceptance and next-token masks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..mask_kernels import earley as E
from ..mask_kernels import mask_cache as MC
from ..mask_kernels import matcher_kernels as MK
from ..mask_kernels.bitmask import bitmask_words
from .compiled_grammar import CompiledGrammar
from .token_trie import shared_store

# bound once: the mask step is a few microseconds, module attribute lookups count
_m_fill = MK.m_fill
_OK, _OK_ALL_ALLOWED, _NEED_CACHE = E.OK, MK.OK_ALL_ALLOWED, MC.NEED_CACHE

_INITIAL_ITEMS = 512
_INITIAL_SETS = 256
_INITIAL_HTAB = 128
_INITIAL_ROOTS = 32
_JUMP_FORWARD_MAX = 4096
_SKIP_PART = bytes(8 * MK.A_COLUMNS)


class GrammarMatcher:
    """Matches tokens against a compiled grammar and computes next-token bitmasks.

    The state is an Earley parse over the grammar's rule automata, one Earley set per byte
    accepted so far, so every grammar is handled exactly (left recursion and ambiguity
    included), and rolling back a token only drops the sets it added. Masks come from the
    compiled grammar's shared per-state cache (see :mod:`grammask.automata.mask_cache`).

    A stop token is allowed exactly when the output so far is a complete sentence of the
    grammar; accepting it terminates the matcher. Not thread-safe: use one matcher per
    sequence (matchers of one compiled grammar may run in different threads).
    """

    def __init__(
        self,
        compiled_grammar: CompiledGrammar,
        *,
        override_stop_tokens: int | Iterable[int] | None = None,
        terminate_without_stop_token: bool = False,
        max_rollback_tokens: int = -1,
    ) -> None:
        """
        Parameters
        ----------
        compiled_grammar:
            The grammar and vocabulary, from :class:`grammask.GrammarCompiler`.
        override_stop_tokens:
            Stop token ids to use instead of the tokenizer's.
        terminate_without_stop_token:
            Terminate as soon as the grammar is complete and nothing can follow, without
            waiting for a stop token.
        max_rollback_tokens:
            How many tokens :meth:`rollback` may undo; -1 for no limit.
        """
        if not isinstance(compiled_grammar, CompiledGrammar):
            raise TypeError("GrammarMatcher needs a CompiledGrammar (see GrammarCompiler)")
        self._compiled = compiled_grammar
        self._g = compiled_grammar.automata.blob
        trie = compiled_grammar.token_trie
        self._trie = trie
        self._tr = trie.blob
        self._tok_bytes = trie.tok_bytes
        self._vocab_size = int(trie.vocab_size)
        if override_stop_tokens is None:
            stops = trie.stop_ids
        else:
            if isinstance(override_stop_tokens, (int, np.integer)):
                override_stop_tokens = [int(override_stop_tokens)]
            stops = np.asarray(sorted(set(int(t) for t in override_stop_tokens)), dtype=np.int32)
            if stops.size and (stops.min() < 0 or stops.max() >= self._vocab_size):
                raise ValueError(f"stop token ids out of range [0, {self._vocab_size})")
        self._stop_ids = stops
        self._stop_set = frozenset(int(t) for t in stops)
        self._terminate_without_stop = bool(terminate_without_stop_token)
        self._max_rollback = int(max_rollback_tokens)
        self._cache = compiled_grammar.mask_cache
        self._caps = [_INITIAL_ITEMS, _INITIAL_SETS, _INITIAL_HTAB, _INITIAL_ROOTS, 64]
        self._buf, self._meta = MK.layout_state(*self._caps, self._stop_ids)
        self._all_possible = _can_allow_all(trie, self._stop_ids)
        self._meta[MK.M_ALL_POSSIBLE] = self._all_possible
        self._history: list[int] = []  # n_sets before each accepted token
        self._terminated = False
        self._row_of: tuple = (None, -1, None)  # (bitmask, index, its validated row)
        self._part: bytes | None = None  # see _make_part
        self._part_arrays: tuple = ()
        self._jf_buf = np.zeros(_JUMP_FORWARD_MAX, dtype=np.uint8)
        self.reset()

    # ------------------------------------------------------------------ buffers

    def _grow(self, unc_needed: int = 0) -> None:
        """Doubles the parser buffers (after a kernel reported FULL), keeping the state."""
        old_buf, old_meta = self._buf, self._meta
        caps = [c * 2 for c in self._caps]
        caps[4] = max(self._caps[4], unc_needed, min(caps[4], len(self._trie.sorted_ids) + 1))
        buf, meta = MK.layout_state(*caps, self._stop_ids)
        n_items = int(old_meta[E.M_NITEMS])
        n_sets = int(old_meta[E.M_NSETS])
        buf[: 3 * n_items] = old_buf[: 3 * n_items]
        so, nso = int(old_meta[MK.M_SETS_OFF]), int(meta[MK.M_SETS_OFF])
        buf[nso:nso + n_sets + 1] = old_buf[so:so + n_sets + 1]
        meta[:4] = old_meta[:4]
        meta[MK.M_ALL_POSSIBLE] = self._all_possible
        self._caps = caps
        self._buf, self._meta = buf, meta
        self._part = None

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Back to the initial state (nothing accepted)."""
        while MK.m_reset(self._g, self._buf, self._meta) == E.FULL:
            self._grow()
        self._history.clear()
        self._terminated = False

    @property
    def stop_token_ids(self) -> list[int]:
        """The token ids that end generation."""
        return [int(t) for t in self._stop_ids]

    @property
    def max_rollback_tokens(self) -> int:
        return self._max_rollback

    @property
    def compiled_grammar(self) -> CompiledGrammar:
        return self._compiled

    def is_terminated(self) -> bool:
        """True once a stop token was accepted (or, with ``terminate_without_stop_token``, once
        the grammar is complete and nothing can follow)."""
        if self._terminated:
            return True
        if self._terminate_without_stop:
            return self._can_end() and not self.can_continue()
        return False

    def is_completed(self) -> bool:
        """Whether the output so far is a complete sentence (a stop token would be accepted)."""
        return self._terminated or self._can_end()

    def can_continue(self) -> bool:
        """Whether some byte may still follow (False: only a stop token can come next)."""
        return not self._terminated and bool(MK.m_can_continue(self._g, self._buf, self._meta))

    def _can_end(self) -> bool:
        return bool(MK.m_can_end(self._g, self._buf, self._meta))

    # ------------------------------------------------------------------ accepting

    def accept_token(self, token_id: int, *, debug_print: bool = False) -> bool:
        """Advances by one token. Returns False, leaving the state unchanged, when the grammar
        does not allow the token, the id is out of range, the token is special, or the matcher
        has terminated."""
        if self._terminated:
            return False
        if type(token_id) is not int:
            try:
                token_id = int(token_id)
            except (TypeError, ValueError):
                return False
        if not 0 <= token_id < self._vocab_size:
            return False
        meta = self._meta
        before = int(meta[0])
        r = MK.m_accept_token(self._g, self._buf, meta, self._tr, self._tok_bytes, token_id)
        while r == E.FULL:
            self._grow()
            meta = self._meta
            r = MK.m_accept_token(self._g, self._buf, meta, self._tr, self._tok_bytes, token_id)
        if r == E.OK:
            self._push_history(before)
            return True
        if token_id in self._stop_set and self._can_end():
            self._push_history(before)
            self._terminated = True
            self._part = None
            return True
        return False

    def accept_string(self, input_str: str | bytes, *, debug_print: bool = False) -> bool:
        """Advances by the bytes of a string (UTF-8 for str), as one rollback step. Returns
        False, leaving the state unchanged, if the grammar does not allow it."""
        if self._terminated:
            return False
        data = input_str.encode("utf-8") if isinstance(input_str, str) else bytes(input_str)
        before = int(self._meta[0])
        if data:
            arr = np.frombuffer(data, dtype=np.uint8)
            while True:
                r = MK.m_accept_bytes(self._g, self._buf, self._meta, arr)
                if r != E.FULL:
                    break
                self._grow()
            if r != E.OK:
                return False
        self._push_history(before)
        return True

    def _push_history(self, n_sets: int) -> None:
        self._history.append(n_sets)
        if 0 <= self._max_rollback < len(self._history):
            del self._history[0]

    def rollback(self, num_tokens: int = 1) -> None:
        """Undoes the last ``num_tokens`` accepted tokens (or strings)."""
        if num_tokens < 0 or num_tokens > len(self._history):
            raise ValueError(
                f"cannot roll back {num_tokens} tokens: {len(self._history)} can be undone"
            )
        if num_tokens == 0:
            return
        target = self._history[-num_tokens]
        del self._history[-num_tokens:]
        MK.m_pop_to(self._buf, self._meta, target)
        self._terminated = False

    # ------------------------------------------------------------------ masks

    def fill_next_token_bitmask(self, bitmask, index: int = 0, *, debug_print: bool = False
                                ) -> bool:
        """Writes the allowed next tokens into row ``index`` of ``bitmask`` (int32 words, bit
        set = allowed; see :func:`grammask.allocate_token_bitmask`). Does not change the state.
        Returns whether the row must be applied (False when every token is allowed)."""
        row = self._row(bitmask, index)
        if self._terminated:
            row[:] = 0
            for t in self._stop_ids:
                row[t >> 5] |= np.int32(1) << np.int32(t & 31)
            return True
        cache = self._cache
        while True:
            r = _m_fill(self._g, self._buf, self._meta, self._tr, self._tok_bytes, cache.cmeta,
                        cache.pool, cache.slots, cache.lcap, row)
            if r == _OK:
                return True
            if r == _OK_ALL_ALLOWED:
                return False
            if r == _NEED_CACHE:
                cache.ensure(int(self._meta[MK.M_MISSING]))
            else:
                self._grow(unc_needed=2 * self._caps[4])

    def _row(self, bitmask, index: int) -> np.ndarray:
        """Row ``index`` of ``bitmask``, validated; the last numpy bitmask's row is kept."""
        if bitmask is self._row_of[0] and index == self._row_of[1]:
            return self._row_of[2]  # validated before (only plain numpy arrays are kept)
        row = _bitmask_row(bitmask, index, self._vocab_size)
        if type(bitmask) is np.ndarray:
            self._row_of = (bitmask, index, row)
        return row

    def _make_part(self) -> bytes:
        """This matcher's row of a batch address table (see matcher_kernels.m_fill_table), as
        the bytes of its int64 values; all zeros (a row the kernel skips) when terminated.
        Kept in ``self._part`` until a buffer is replaced; the arrays behind the addresses
        stay referenced by ``self._part_arrays`` as long. The cache arrays it names may fall
        behind the cache's (the kernel then reports a missing entry, and the batch fills the
        row through :meth:`fill_next_token_bitmask` and drops the part)."""
        if self._terminated:
            return _SKIP_PART
        cache = self._cache
        arrays = (self._g, self._buf, self._meta, self._tr, self._tok_bytes, cache.cmeta,
                  cache.pool, cache.slots)
        addr = []
        for a in arrays:
            addr += (a.ctypes.data, a.shape[0])
        addr += (cache.lcap, bitmask_words(self._vocab_size))
        self._part = np.array(addr, dtype=np.int64).tobytes()
        self._part_arrays = arrays
        return self._part

    def _fill_uncached(self, row: np.ndarray) -> None:
        """The mask by a full trie walk, without the cache (for tests and comparisons)."""
        while MK.m_fill_uncached(self._g, self._buf, self._meta, self._tr, self._tok_bytes,
                                 row) == E.FULL:
            self._grow()

    def find_jump_forward_string(self) -> str:
        """The longest string the grammar forces from here (empty when the next byte is a
        choice, or when the output may end here). Cut at a character boundary. Does not change
        the state."""
        data = self.find_jump_forward_bytes()
        end = len(data)
        # drop an incomplete UTF-8 sequence at the end
        i = end - 1
        while i >= 0 and end - i <= 4 and (data[i] & 0xC0) == 0x80:
            i -= 1
        if i >= 0 and data[i] >= 0xC0:
            width = 2 if data[i] < 0xE0 else 3 if data[i] < 0xF0 else 4
            if end - i < width:
                end = i
        return data[:end].decode("utf-8", errors="replace")

    def find_jump_forward_bytes(self) -> bytes:
        """Like :meth:`find_jump_forward_string`, as raw bytes, not cut."""
        if self._terminated:
            return b""
        while True:
            n = MK.m_jump_forward(self._g, self._buf, self._meta, self._jf_buf)
            if n != E.FULL:
                return bytes(self._jf_buf[:n])
            self._grow()

    def _debug_state(self) -> str:
        items, sets, _ = MK.views(self._buf, self._meta)
        k = int(self._meta[0]) - 1
        lo, hi = int(sets[k]), int(sets[k + 1])
        return " ".join(f"({s},{o})" for s, o in items[lo:hi, :2].tolist())


def _can_allow_all(trie, stop_ids: np.ndarray) -> bool:
    """Whether every token id is either in the trie or a stop token (else no mask can allow
    all tokens)."""
    store, _ = shared_store(trie)
    key = ("allow_all", stop_ids.tobytes())
    known = store.get(key)
    if known is None:
        missing = store.get("ids_not_in_trie")
        if missing is None:  # a set difference over the vocabulary costs ~10 ms: once per trie
            missing = store["ids_not_in_trie"] = np.flatnonzero(trie.id_ptr < 0)
        known = store[key] = bool(np.isin(missing, stop_ids).all())
    return known


def numpy_bitmask(bitmask) -> np.ndarray:
    """An int32 bitmask (numpy, or a CPU torch tensor) as a numpy array sharing its memory."""
    if type(bitmask) is not np.ndarray:
        if type(bitmask).__module__.startswith("torch"):
            if bitmask.device.type != "cpu":
                raise ValueError("the bitmask must be on the CPU")
            bitmask = bitmask.numpy()
        else:
            raise TypeError("the bitmask must be an int32 array (see allocate_token_bitmask)")
    if bitmask.dtype != np.int32:
        raise TypeError("the bitmask must be an int32 array (see allocate_token_bitmask)")
    return bitmask


def _bitmask_row(bitmask, index: int, vocab_size: int) -> np.ndarray:
    bitmask = numpy_bitmask(bitmask)
    row = bitmask if bitmask.ndim == 1 else bitmask[index]
    if row.shape[0] < (vocab_size + 31) >> 5 or not row.flags.c_contiguous:
        raise ValueError(
            f"bitmask row must be contiguous with at least {bitmask_words(vocab_size)} words "
            f"for a vocabulary of {vocab_size}"
        )
    return row
