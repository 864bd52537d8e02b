"""Exception classes shared by every layer of grammask.

Every error points at the input that caused it: a line and column of a grammar, the JSON
pointer into a schema, the tensor name in a GGUF file.
"""

from __future__ import annotations


class GrammaskError(Exception):
    """Base class of every error grammask raises on purpose."""


class GrammarError(GrammaskError, ValueError):
    """A grammar, regex or grammar IR is malformed, or cannot be compiled."""


class SchemaError(GrammaskError, ValueError):
    """A JSON Schema is invalid: not a schema, a dangling ``$ref``, a bad regex..."""

    def __init__(self, message: str, pointer: str = ""):
        self.pointer = pointer
        super().__init__(f"{message} (at {pointer or '#'})" if pointer is not None else message)


class UnsupportedSchemaError(SchemaError):
    """A JSON Schema keyword cannot be enforced exactly (raised unless ``lenient=True``)."""

    def __init__(self, keyword: str, pointer: str = "", detail: str = ""):
        self.keyword = keyword
        msg = f"keyword {keyword!r} cannot be enforced"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, pointer)


class TokenizerError(GrammaskError, ValueError):
    """A tokenizer or vocabulary cannot be understood."""


class ModelFormatError(GrammaskError, ValueError):
    """A model file is truncated, corrupted, or uses an unsupported architecture or type."""
