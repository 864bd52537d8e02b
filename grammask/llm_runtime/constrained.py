"""Constrained decoding on the bundled runtime: a grammar matcher in the decode loop.

Each step, the next-token bitmask is computed on a worker thread while the model's forward
pass runs (both are Numba kernels that release the GIL), applied to the logits, and the
sampled token is fed to the matcher. When the grammar forces the next bytes (a closing
quote and a comma, a property name...), they are appended without sampling: tokenized
canonically (the tokenizer's own encoding of the text around them, the token boundary
checked) and fed to the model in one batch with the sampled token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..automata.matcher import GrammarMatcher
from ..mask_kernels.bitmask import allocate_token_bitmask, apply_token_bitmask_inplace

_MISSING = object()


class GenerationResult(str):
    """The generated text (it is a ``str``) with how generation ended.

    ``finish_reason``: ``"stop"`` when the model or the grammar ended it, ``"length"`` when
    ``max_tokens`` or the context ran out first (a constrained output is then a valid prefix,
    not a complete sentence). ``token_ids``: the generated tokens; ``forced_tokens``: how many
    of them jump-forward appended without sampling. For a schema, ``json`` is the parsed
    value, and ``parsed`` the pydantic instance when a model class was given.
    """

    finish_reason: str
    token_ids: list[int]
    forced_tokens: int

    def __new__(
        cls,
        text: str,
        *,
        finish_reason: str,
        token_ids: Sequence[int] = (),
        forced_tokens: int = 0,
        schema_model: Any = None,
        is_json: bool = False,
    ):
        obj = super().__new__(cls, text)
        obj.finish_reason = finish_reason
        obj.token_ids = list(token_ids)
        obj.forced_tokens = forced_tokens
        obj._is_json = is_json
        obj._schema_model = schema_model
        obj._value = _MISSING
        return obj

    @property
    def json(self) -> Any:
        """The JSON value of a schema-constrained output. ValueError when generation was cut
        by ``max_tokens`` (``finish_reason == "length"``) or was not constrained by a schema."""
        if not self._is_json:
            raise ValueError("json is only available for generations with schema=...")
        if self.finish_reason != "stop":
            raise ValueError(
                "generation stopped at max_tokens before the JSON was complete "
                "(finish_reason='length'); raise max_tokens"
            )
        if self._value is _MISSING:
            self._value = json.loads(str(self))
        return self._value

    @property
    def parsed(self) -> Any:
        """The pydantic instance (when ``schema`` was a pydantic model class), else the JSON
        value."""
        value = self.json
        model = self._schema_model
        if model is not None and hasattr(model, "model_validate"):
            return model.model_validate(value)
        return value


class GenerationStream:
    """An iterator of text pieces; once exhausted, ``result`` holds the GenerationResult."""

    def __init__(self, pieces: Iterator[str], finish):
        self._pieces = pieces
        self._finish = finish
        self._parts: list[str] = []
        self.result: GenerationResult | None = None

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> str:
        try:
            piece = next(self._pieces)
        except StopIteration:
            if self.result is None:
                self.result = self._finish("".join(self._parts))
            raise
        self._parts.append(piece)
        return piece


class GrammarStepHook:
    """Plugs a GrammarMatcher into the runtime's decode loop (see ``llm.StepHook``).

    ``process_logits`` masks the logits with the bitmask computed for the current state
    (started on a worker thread as soon as the previous token was accepted);
    ``accept_token`` feeds the sampled token to the matcher and returns the forced tokens to
    append; ``is_finished`` is true once the grammar is complete and nothing may follow.
    """

    def __init__(
        self,
        matcher: GrammarMatcher,
        decoded_vocab: Sequence[bytes],
        tokenizer,
        vocab_size: int,
        *,
        jump_forward: bool = True,
        overlap: bool = True,
    ):
        self.matcher = matcher
        self._vocab = decoded_vocab
        self._tokenizer = tokenizer
        self._bitmask = allocate_token_bitmask(1, vocab_size)
        self._jump = jump_forward
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="grammask-mask") if overlap else None
        self._pending: Future | None = None
        self._recent: list[int] = []  # the last tokens emitted, for the boundary check
        self.forced_tokens = 0
        self._lock = threading.Lock()
        self._schedule()

    # -- the StepHook protocol -------------------------------------------------------------

    def process_logits(self, logits: np.ndarray) -> None:
        self._wait()
        apply_token_bitmask_inplace(logits, self._bitmask[0])

    def accept_token(self, token_id: int) -> list[int]:
        self._wait()
        if not self.matcher.accept_token(token_id):
            raise RuntimeError(
                f"token {token_id} was sampled outside the grammar's mask (logits not masked?)"
            )
        self._remember(token_id)
        forced = self._jump_forward() if self._jump else []
        self._schedule()
        return forced

    def is_finished(self) -> bool:
        self._wait()
        m = self.matcher
        return m.is_terminated() or (m.is_completed() and not m.can_continue())

    def close(self) -> None:
        self._wait()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # -- internals ---------------------------------------------------------------------

    def _fill(self) -> None:
        self.matcher.fill_next_token_bitmask(self._bitmask, 0)

    def _schedule(self) -> None:
        if self._pool is None:
            self._fill()
        else:
            self._pending = self._pool.submit(self._fill)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _remember(self, token_id: int) -> None:
        self._recent.append(token_id)
        del self._recent[:-2]

    def _jump_forward(self) -> list[int]:
        """Tokens for the bytes the grammar forces next, tokenized as the tokenizer would
        tokenize the text around them; the last one is left to the model (it could merge
        with what the model writes next), so is anything when the boundary with the previous
        tokens would be tokenized differently."""
        m = self.matcher
        forced = m.find_jump_forward_string()
        if not forced:
            return []
        try:
            context = b"".join(self._vocab[t] for t in self._recent).decode("utf-8")
        except UnicodeDecodeError:
            return []  # the previous token ends inside a character
        ids = self._tokenizer.encode(context + forced, add_special_tokens=False).ids
        head = self._tokenizer.encode(context, add_special_tokens=False).ids if context else []
        if ids[: len(head)] != head:
            return []
        new = ids[len(head) :][:-1]
        out = []
        for t in new:
            if not m.accept_token(t):
                break
            out.append(t)
        for t in out:
            self._remember(t)
        self.forced_tokens += len(out)
        return out
