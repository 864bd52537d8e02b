"""grammask: structured generation for LLMs.

Grammars (Lark, GBNF), regexes and JSON Schemas compile into byte-level automata; Numba
kernels produce each decoding step's allowed-token bitmask; a bundled quantized GGUF runtime
uses it so that generation is guaranteed to match.
"""

from . import _kernel_cache

_kernel_cache.configure()  # before any module with cached kernels is imported

from .errors import (
    GrammaskError,
    GrammarError,
    ModelFormatError,
    SchemaError,
    TokenizerError,
    UnsupportedSchemaError,
)
from .automata.tokenizer_info import TokenizerInfo, VocabType
from .grammar.ir import Grammar
from .automata.compiled_grammar import CompiledGrammar
from .automata.compiler import GrammarCompiler
from .automata.matcher import GrammarMatcher
from .automata.batch import BatchGrammarMatcher, batch_fill_next_token_bitmask
from .mask_kernels.bitmask import (
    allocate_token_bitmask,
    apply_token_bitmask_inplace,
    get_bitmask_shape,
    reset_token_bitmask,
)
from .warmup import warmup

__version__ = "0.1.0"


def __getattr__(name: str):
    # the bundled runtime is imported when first asked for: a grammar backend that only
    # compiles grammars and fills masks does not pay for its imports at start-up
    if name == "LLM":
        from .llm_runtime import LLM

        return LLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "warmup",
    "BatchGrammarMatcher",
    "batch_fill_next_token_bitmask",
    "LLM",
    "CompiledGrammar",
    "Grammar",
    "GrammarCompiler",
    "GrammarMatcher",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "get_bitmask_shape",
    "reset_token_bitmask",
    "GrammaskError",
    "GrammarError",
    "ModelFormatError",
    "SchemaError",
    "TokenizerError",
    "TokenizerInfo",
    "UnsupportedSchemaError",
    "VocabType",
]
