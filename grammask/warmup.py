"""Start-up warm-up: every kernel a compile or a matcher can meet, loaded before the first
request.

Numba keeps each kernel's machine code in a disk cache, but a process loads it the first time
the kernel runs: a few milliseconds per kernel, so the first request that meets a new path
(the first bounded string, the first big enum...) pays tens of milliseconds. A server calls
:func:`warmup` once at start-up instead; it compiles a few small grammars over a synthetic
vocabulary that between them take every path of the compiler, the mask cache and the matcher.
"""

from __future__ import annotations

import random
import time

import numpy as np

from .mask_kernels.bitmask import unpack_bitmask

#: The JSON Schema the warm-up compiles: bounded and free strings (counter blocks, entries
#: built through a call), keys beside free keys (the subtree memo), a big enum (DFA
#: minimization), patterns, formats, numbers with bounds and multipleOf, arrays, nesting,
#: anyOf/oneOf, references.
_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 300},
        "code": {"type": "string", "pattern": "^[A-F0-9]{4,8}$"},
        "kind": {"enum": [f"kind{k:02d}" for k in range(60)] + [None, 3]},
        "when": {"type": "string", "format": "date-time"},
        "mail": {"type": "string", "format": "email"},
        "n": {"type": "integer", "minimum": -40, "maximum": 100000},
        "x": {"type": "number", "multipleOf": 0.01, "exclusiveMinimum": 0},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8},
                 "minItems": 1, "maxItems": 12},
        "flags": {"type": "array", "items": {"enum": ["r", "w", "x"]}, "uniqueItems": True},
        "child": {"$ref": "#"},
        "any": {},
        "either": {"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "number"}}]},
        "one": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
    },
    "required": ["name"],
    "additionalProperties": {"type": ["string", "integer", "object"]},
}

_LARK = r"""
start: expr
?expr: expr "+" term | term
?term: term "*" atom | atom
?atom: NUMBER | "(" expr ")" | NAME
NAME: /[a-z_][a-z_0-9]{0,40}/
%import common.NUMBER
%import common.WS
%ignore WS
"""

_GBNF = r"""
root ::= line+
line ::= field ("," field)* "\n"
field ::= [^,\n"]* | "\"" ([^"] | "\"\"")* "\""
"""

_REGEX = r"(?:[a-z]{2,30}@[a-z]+\.(?:com|org)|\d{3}-\d{4}|x{1,200})"

_INSTANCES = [
    ('{"name": "ab", "code": "A1B2", "kind": "kind07", "n": 12, "x": 1.25, '
     '"tags": ["a", "bb"], "flags": ["w", "r"], "child": {"name": "c", "any": [1, {"q": null}]}, '
     '"either": [1.5e3], "one": "xy", "free key": "v", "other": {"k": 1}}'),
    ('{"name": "' + "n" * 40 + '", "when": "2024-01-02T03:04:05Z", '
     '"mail": "a@b.co", "kind": null}'),
]


def _vocabulary():
    """A synthetic byte vocabulary: every printable ASCII byte, pairs under a few first bytes
    (subtrees big enough for the memo), JSON punctuation runs, whitespace runs, words, UTF-8,
    long tokens (beyond the counter-block distance codes). Token 0 is the stop token."""
    from .automata.tokenizer_info import TokenizerInfo, VocabType

    printable = [bytes([b]) for b in range(32, 127)] + [b"\n", b"\t"]
    tokens = [b"</s>"] + printable
    for first in b'a "kx0':
        tokens += [bytes([first, b]) for b in range(32, 127)]
    tokens += [b'":', b'": "', b'", "', b'{"', b'"}', b'"]', b'["', b", ", b"  ", b"    ",
               b"\n  ", b"true", b"false", b"null", b"name", b"kind", b"kind0", b"1.", b"00",
               b"0-", b"T0", b":00", "é".encode(), "€".encode(), "€".encode()[:2],
               "€".encode()[2:], "日本".encode(), b"x" * 40, b" " * 48, b"n" * 36]
    tokens = list(dict.fromkeys(tokens))
    return TokenizerInfo(tokens, vocab_type=VocabType.RAW, stop_token_ids=[0])


def _walk(matcher, bitmask, vocab_size: int, rng: random.Random, text: str | None,
          steps: int) -> None:
    """Follows ``text`` (when given), then random allowed tokens; rolls back and jumps forward
    on the way."""
    if text is not None:
        for ch in text:
            matcher.fill_next_token_bitmask(bitmask)
            if not matcher.accept_string(ch):
                break
        matcher.rollback(min(3, len(text)))
    for _ in range(steps):
        matcher.fill_next_token_bitmask(bitmask)
        matcher.find_jump_forward_string()
        allowed = np.flatnonzero(unpack_bitmask(bitmask[0], vocab_size)).tolist()
        if not allowed or matcher.is_terminated():
            break
        if not matcher.accept_token(rng.choice(allowed)):
            break


def warmup(*, batch: bool = True) -> float:
    """Loads the machine code of every kernel that compiling grammars and filling masks can
    run (compiling them the first time the package runs on a machine), so that no request
    pays for it later. ``batch``: also start the worker threads of batch fills (one pool for
    the default thread count, when there are several CPUs). Returns the seconds it took. Safe to call again (then fast)."""
    from .automata.batch import MIN_ROWS_PARALLEL, BatchGrammarMatcher
    from .automata.compiler import GrammarCompiler
    from .automata.matcher import GrammarMatcher
    from .mask_kernels import mask_cache as MC
    from .mask_kernels.bitmask import allocate_token_bitmask, apply_token_bitmask_inplace

    t0 = time.perf_counter()
    info = _vocabulary()
    compiler = GrammarCompiler(info, max_threads=1, cache_enabled=False)
    rng = random.Random(0)
    bitmask = allocate_token_bitmask(1, info.vocab_size)
    grammars = [(compiler.compile_json_schema(_SCHEMA, any_whitespace=ws), texts)
                for ws, texts in ((True, _INSTANCES), (False, _INSTANCES[:1]))]
    grammars += [(compiler.compile_grammar(_LARK), ["1 + (ab * 2)"]),
                 (compiler.compile_grammar(_GBNF), ['a,"b""c",d\n']),
                 (compiler.compile_regex(_REGEX), ["xx"]),
                 (compiler.compile_builtin_json_grammar(), ['{"a": [1, "b"]}'])]
    n = info.vocab_size
    matchers = []
    for compiled, texts in grammars:
        for k, text in enumerate(texts + [None, None]):
            m = GrammarMatcher(compiled)
            _walk(m, bitmask, n, rng, text, 24 if text is None else 6)
            m.reset()
            _walk(m, bitmask, n, rng, None, 4 + k)
            matchers.append(m)
    apply_token_bitmask_inplace(np.zeros((1, info.vocab_size), dtype=np.float32), bitmask)
    # the memo's table grows in big schemas only
    MC.memo_rehash(np.full((4, 4), -1, dtype=np.int64), np.full((8, 4), -1, dtype=np.int64))
    if batch:
        # enough rows for the worker pool (one matcher per row: a row's matcher is not shared)
        while len(matchers) < MIN_ROWS_PARALLEL:
            m = GrammarMatcher(grammars[len(matchers) % len(grammars)][0])
            _walk(m, bitmask, n, rng, None, len(matchers) % 5)
            matchers.append(m)
        rows = allocate_token_bitmask(len(matchers), n)
        for t in sorted({1, BatchGrammarMatcher().max_threads}):
            BatchGrammarMatcher(t).batch_fill_next_token_bitmask(matchers, rows)
    return time.perf_counter() - t0
