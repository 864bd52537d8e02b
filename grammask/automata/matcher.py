"""GrammarMatcher: the per-request parser state, token acceptance and next-token masks."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..mask_kernels import earley as K
from ..mask_kernels import mask_cache as MC
from ..mask_kernels.bitmask import bitmask_words
from .compiled_grammar import CompiledGrammar
from .mask_cache import new_htab

_INITIAL_ITEMS = 1024
_INITIAL_SETS = 256


class GrammarMatcher:
    """Matches tokens against a compiled grammar and computes next-token bitmasks.

    The state is an Earley parse over the grammar's rule automata, one Earley set per byte
    accepted so far, so every grammar is handled exactly (left recursion and ambiguity
    included), and rolling back a token only drops the sets it added.

    A stop token is allowed exactly when the output so far is a complete sentence of the
    grammar; accepting it terminates the matcher.
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
        self._trie = compiled_grammar.token_trie
        info = compiled_grammar.tokenizer_info
        self._vocab_size = int(info.vocab_size)
        if override_stop_tokens is None:
            stops = self._trie.stop_ids
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
        self._items = np.zeros((_INITIAL_ITEMS, 3), dtype=np.int32)
        self._sets = np.zeros(_INITIAL_SETS, dtype=np.int32)
        self._htab = new_htab(256)
        self._meta = np.zeros(4, dtype=np.int64)
        self._history: list[int] = []  # n_sets before each accepted token
        self._terminated = False
        self._jf_buf = np.zeros(4096, dtype=np.uint8)
        self._cache = compiled_grammar.mask_cache
        self._roots = np.zeros(64, dtype=np.int32)
        self._unc_buf = np.zeros(max(1, len(self._trie.sorted_ids)), dtype=np.int32)
        self._missing = np.zeros(1, dtype=np.int64)
        self.reset()

    # ------------------------------------------------------------------ buffers

    def _grow(self) -> None:
        """Doubles the item and set buffers (after a kernel reported FULL)."""
        items = np.zeros((self._items.shape[0] * 2, 3), dtype=np.int32)
        items[: self._items.shape[0]] = self._items
        self._items = items
        sets = np.zeros(self._sets.shape[0] * 2, dtype=np.int32)
        sets[: self._sets.shape[0]] = self._sets
        self._sets = sets
        self._htab = new_htab(self._htab.shape[0] * 2)

    def _run(self, kernel, *args):
        while True:
            r = kernel(self._g, self._items, self._sets, self._htab, self._meta, *args)
            if r != K.FULL:
                return r
            self._grow()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Back to the initial state (nothing accepted)."""
        self._run(K.init_state)
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
            return self._can_end() and not self._can_continue()
        return False

    def is_completed(self) -> bool:
        """Whether the output so far is a complete sentence (a stop token would be accepted)."""
        return self._terminated or self._can_end()

    def _can_end(self) -> bool:
        return bool(K.can_end(self._g, self._items, self._sets, self._meta))

    def _can_continue(self) -> bool:
        classes = np.zeros(int(self._g[K.H_NCLASSES]), dtype=np.int8)
        K.next_byte_classes(self._g, self._items, self._sets, self._meta, classes)
        return bool(classes.any())

    # ------------------------------------------------------------------ accepting

    def accept_token(self, token_id: int, *, debug_print: bool = False) -> bool:
        """Advances by one token. Returns False, leaving the state unchanged, when the grammar
        does not allow the token, the id is out of range, the token is special, or the matcher
        has terminated."""
        if self._terminated:
            return False
        try:
            t = int(token_id)
        except (TypeError, ValueError):
            return False
        if not 0 <= t < self._vocab_size:
            return False
        if t in self._stop_set:
            if self._can_end():
                self._history.append(int(self._meta[K.M_NSETS]))
                self._terminated = True
                self._trim_history()
                return True
            return False
        n = int(self._trie.id_len[t])
        if n == 0:
            return False
        p = int(self._trie.id_ptr[t])
        return self._accept_bytes(self._trie.tok_bytes[p : p + n])

    def accept_string(self, input_str: str | bytes, *, debug_print: bool = False) -> bool:
        """Advances by the bytes of a string (UTF-8 for str), as one rollback step. Returns
        False, leaving the state unchanged, if the grammar does not allow it."""
        if self._terminated:
            return False
        data = input_str.encode("utf-8") if isinstance(input_str, str) else bytes(input_str)
        if not data:
            self._history.append(int(self._meta[K.M_NSETS]))
            self._trim_history()
            return True
        return self._accept_bytes(np.frombuffer(data, dtype=np.uint8))

    def _accept_bytes(self, data: np.ndarray) -> bool:
        before = int(self._meta[K.M_NSETS])
        while before + len(data) + 1 >= self._sets.shape[0]:
            self._grow()
        r = self._run(K.push_bytes, data)
        if r != K.OK:
            return False
        self._history.append(before)
        self._trim_history()
        return True

    def _trim_history(self) -> None:
        if self._max_rollback >= 0 and len(self._history) > self._max_rollback:
            del self._history[: len(self._history) - self._max_rollback]

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
        K.pop_to(self._sets, self._meta, target)
        self._terminated = False

    # ------------------------------------------------------------------ masks

    def fill_next_token_bitmask(self, bitmask, index: int = 0, *, debug_print: bool = False
                                ) -> bool:
        """Writes the allowed next tokens into row ``index`` of ``bitmask`` (int32 words, bit
        set = allowed; see :func:`grammask.allocate_token_bitmask`). Does not change the state.
        Returns whether the row must be applied (False when every token is allowed)."""
        row = _bitmask_row(bitmask, index, self._vocab_size)
        if self._terminated:
            row[:] = 0
            for t in self._stop_ids:
                row[t >> 5] |= np.int32(1) << np.int32(t & 31)
            return True
        trie = self._trie
        cache = self._cache
        while True:
            r = MC.fill_mask_cached(self._g, self._items, self._sets, self._htab, self._meta,
                                    trie.tok_bytes, trie.tok_ptr, trie.sorted_ids, cache.cmeta,
                                    cache.pool, cache.slots, cache.lcap, cache.universe,
                                    self._stop_ids, row,
                                    self._roots, self._unc_buf, self._missing)
            if r == K.OK:
                break
            if r == MC.NEED_CACHE:
                cache.ensure(int(self._missing[0]))
            else:
                self._grow()
                self._roots = np.zeros(self._roots.shape[0] * 2, dtype=np.int32)
                self._unc_buf = np.zeros(self._unc_buf.shape[0] * 2, dtype=np.int32)
        return not _all_allowed(row, self._vocab_size)

    def _fill_uncached(self, row: np.ndarray) -> None:
        """The mask by a full trie walk, without the cache (for tests and comparisons)."""
        trie = self._trie
        while True:
            r = K.fill_mask(self._g, self._items, self._sets, self._htab, self._meta,
                            trie.tok_bytes, trie.tok_ptr, trie.sorted_ids, trie.lcp, trie.skip,
                            self._stop_ids, row)
            if r != K.FULL:
                return
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
        while self._sets.shape[0] < int(self._meta[K.M_NSETS]) + len(self._jf_buf) + 2:
            self._grow()
        n = self._run(K.jump_forward, self._jf_buf)
        return bytes(self._jf_buf[:n])

    def _debug_state(self) -> str:
        k = int(self._meta[K.M_NSETS]) - 1
        lo, hi = int(self._sets[k]), int(self._sets[k + 1])
        return " ".join(f"({s},{o})" for s, o in self._items[lo:hi, :2].tolist())


def _bitmask_row(bitmask, index: int, vocab_size: int) -> np.ndarray:
    if type(bitmask).__module__.startswith("torch"):
        if bitmask.device.type != "cpu":
            raise ValueError("the bitmask must be on the CPU")
        bitmask = bitmask.numpy()
    if not isinstance(bitmask, np.ndarray) or bitmask.dtype != np.int32:
        raise TypeError("the bitmask must be an int32 array (see allocate_token_bitmask)")
    row = bitmask if bitmask.ndim == 1 else bitmask[index]
    if row.shape[0] < bitmask_words(vocab_size):
        raise ValueError(
            f"bitmask row has {row.shape[0]} words; vocabulary of {vocab_size} needs "
            f"{bitmask_words(vocab_size)}"
        )
    if not row.flags.c_contiguous:
        raise ValueError("the bitmask row must be contiguous")
    return row


def _all_allowed(row: np.ndarray, vocab_size: int) -> bool:
    full, rest = divmod(vocab_size, 32)
    if not (row[:full] == -1).all():
        return False
    if rest:
        want = (1 << rest) - 1
        return (int(row[full]) & want) == want
    return True
