"""CompiledGrammar: a grammar's automata bound to a tokenizer's vocabulary. Immutable."""

from __future__ import annotations

import threading

from ..grammar.ir import Grammar
from .mask_cache import MaskCache
from .rule_automata import RuleAutomata, build_rule_automata
from .token_trie import TokenTrie, token_trie_of


class CompiledGrammar:
    """A grammar compiled for one tokenizer. Build it with :class:`grammask.GrammarCompiler`.

    Immutable and thread-safe: any number of :class:`grammask.GrammarMatcher` objects (in any
    threads) can share one. Picklable.
    """

    __slots__ = (
        "__weakref__",
        "_automata",
        "_grammar",
        "_lock",
        "_mask_cache",
        "_tokenizer_info",
    )

    def __init__(self, grammar: Grammar, tokenizer_info, automata: RuleAutomata | None = None):
        self._grammar = grammar
        self._tokenizer_info = tokenizer_info
        self._automata = automata if automata is not None else build_rule_automata(grammar)
        self._mask_cache = None
        self._lock = threading.Lock()

    @property
    def grammar(self) -> Grammar:
        """The grammar IR this was compiled from."""
        return self._grammar

    @property
    def tokenizer_info(self):
        """The TokenizerInfo the masks are computed for."""
        return self._tokenizer_info

    @property
    def automata(self) -> RuleAutomata:
        return self._automata

    @property
    def token_trie(self) -> TokenTrie:
        return token_trie_of(self._tokenizer_info)

    @property
    def mask_cache(self) -> MaskCache:
        """The per-state token-mask cache, shared by every matcher of this grammar."""
        cache = self._mask_cache
        if cache is None:
            with self._lock:
                if self._mask_cache is None:
                    self._mask_cache = MaskCache(self._automata, self.token_trie)
                cache = self._mask_cache
        return cache

    @property
    def memory_size_bytes(self) -> int:
        """Bytes held by this grammar: its automata and the mask-cache entries built so far
        (the vocabulary trie, shared by all grammars of a tokenizer, is not counted)."""
        size = int(self._automata.blob.nbytes)
        if self._mask_cache is not None:
            size += self._mask_cache.memory_size_bytes
        return size

    def __getstate__(self):
        return (self._grammar, self._tokenizer_info, self._automata)

    def __setstate__(self, state):
        self._grammar, self._tokenizer_info, self._automata = state
        self._mask_cache = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        a = self._automata
        return (f"CompiledGrammar({len(a.rule_names)} rules, {a.n_states} states, "
                f"{a.n_classes} byte classes)")
