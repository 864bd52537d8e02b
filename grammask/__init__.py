"""grammask: structured generation for LLMs.

Grammars (Lark, GBNF), regexes and JSON Schemas compile into byte-level automata; Numba
kernels produce each decoding step's allowed-token bitmask; a bundled quantized GGUF runtime
uses it so that generation is guaranteed to match.
"""

from .errors import (
    GrammaskError,
    GrammarError,
    ModelFormatError,
    SchemaError,
    TokenizerError,
    UnsupportedSchemaError,
)
from .grammar.ir import Grammar

__version__ = "0.1.0"

__all__ = [
    "Grammar",
    "GrammaskError",
    "GrammarError",
    "ModelFormatError",
    "SchemaError",
    "TokenizerError",
    "UnsupportedSchemaError",
]
