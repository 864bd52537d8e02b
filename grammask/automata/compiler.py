"""GrammarCompiler: grammar text, regexes and JSON Schemas -> CompiledGrammar."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from ..errors import GrammarError
from ..grammar.ir import Grammar
from .compiled_grammar import CompiledGrammar
from .token_trie import token_trie_of


class GrammarCompiler:
    """Compiles grammars for one tokenizer, keeping recently compiled ones in a cache.

    Thread-safe. The cache is a least-recently-used map bounded by ``cache_limit_bytes``
    (-1: unbounded); a grammar compiled twice with the same arguments is returned from it.
    """

    def __init__(self, tokenizer_info, *, max_threads: int = 8, cache_enabled: bool = True,
                 cache_limit_bytes: int = 256 * 1024 * 1024) -> None:
        self._tokenizer_info = tokenizer_info
        self._max_threads = max_threads
        self._cache_enabled = cache_enabled
        self._cache_limit = cache_limit_bytes
        self._cache: OrderedDict[Any, CompiledGrammar] = OrderedDict()
        self._cache_bytes = 0
        self._lock = threading.Lock()
        token_trie_of(tokenizer_info)  # build the shared vocabulary index up front

    @property
    def tokenizer_info(self):
        return self._tokenizer_info

    # ------------------------------------------------------------------ entry points

    def compile_grammar(self, grammar: str | Grammar, *, syntax: str = "auto",
                        start: str | None = None, root_rule_name: str | None = None
                        ) -> CompiledGrammar:
        """Compiles a grammar given as Lark or GBNF text (``syntax`` "auto", "lark" or "gbnf")
        or as a :class:`grammask.Grammar`. ``start`` names the start rule (``root_rule_name``
        is accepted as XGrammar's spelling). Raises :class:`grammask.GrammarError`."""
        start = start if start is not None else root_rule_name
        if isinstance(grammar, Grammar):
            return self._cached(("ir", id(grammar)), lambda: grammar, keep=grammar)
        if not isinstance(grammar, str):
            raise TypeError(f"grammar must be text or a Grammar, got {type(grammar).__name__}")
        if syntax not in ("auto", "lark", "gbnf", "ebnf"):
            raise ValueError(f"syntax must be 'auto', 'lark' or 'gbnf', got {syntax!r}")

        def build() -> Grammar:
            from ..grammar import parse_grammar

            return parse_grammar(grammar, syntax="gbnf" if syntax == "ebnf" else syntax,
                                 start=start)

        return self._cached(("text", grammar, syntax, start), build)

    def compile_regex(self, pattern: str, *, flags: int = 0) -> CompiledGrammar:
        """Compiles a regex (Python ``re`` syntax); the language is what ``re.fullmatch``
        accepts."""
        return self._cached(("regex", pattern, flags),
                            lambda: Grammar.from_regex(pattern, flags=flags))

    def compile_json_schema(self, schema, *, any_whitespace: bool = True,
                            indent: int | None = None,
                            separators: tuple[str, str] | None = None,
                            strict_mode: bool = True, lenient: bool = False) -> CompiledGrammar:
        """Compiles a JSON Schema (a dict, JSON text, or a pydantic model class) into a grammar
        of the JSON texts that validate against it. See :mod:`grammask.grammar.json_schema`
        for the options. Raises :class:`grammask.SchemaError` /
        :class:`grammask.UnsupportedSchemaError`."""
        if hasattr(schema, "model_json_schema"):
            schema = schema.model_json_schema()
        key = None
        if self._cache_enabled:
            key_schema = (schema if isinstance(schema, str)
                          else json.dumps(schema, sort_keys=True))
            key = ("json", key_schema, any_whitespace, indent,
                   tuple(separators) if separators else None, strict_mode, lenient)
        return self._cached(key, lambda: Grammar.from_json_schema(
            schema, any_whitespace=any_whitespace, indent=indent, separators=separators,
            strict_mode=strict_mode, lenient=lenient))

    def compile_builtin_json_grammar(self) -> CompiledGrammar:
        """A grammar for any JSON value."""
        def build():
            from ..grammar.json_schema import builtin_json_grammar

            return builtin_json_grammar()

        return self._cached(("builtin_json",), build)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0

    def get_cache_size_bytes(self) -> int:
        return self._cache_bytes

    # ------------------------------------------------------------------ cache

    def _cached(self, key, build, keep=None) -> CompiledGrammar:
        if self._cache_enabled:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and (keep is None or hit.grammar is keep):
                    self._cache.move_to_end(key)
                    return hit
        grammar = build()
        if not isinstance(grammar, Grammar):
            raise GrammarError("front-end did not produce a Grammar")
        compiled = CompiledGrammar(grammar, self._tokenizer_info)
        if self._cache_enabled:
            with self._lock:
                old = self._cache.pop(key, None)
                if old is not None:
                    self._cache_bytes -= old.memory_size_bytes
                self._cache[key] = compiled
                self._cache_bytes += compiled.memory_size_bytes
                while self._cache_limit >= 0 and self._cache_bytes > self._cache_limit \
                        and len(self._cache) > 1:
                    _, ev = self._cache.popitem(last=False)
                    self._cache_bytes -= ev.memory_size_bytes
        return compiled
