"""A transformers ``LogitsProcessor`` that keeps ``model.generate`` inside a grammar.

Each row of the batch gets its own :class:`~grammask.GrammarMatcher`. On every call the
processor works out which tokens each row appended since the previous call (usually one;
none on the first call, which sees only the prompt), feeds them to that row's matcher, fills
the next-token bitmask of every row on a thread pool and masks the scores in place.

The processor does not assume the sequences only grow by one token per call: it compares
what it is given with what it saw before and rolls matchers back to the longest common
prefix. That makes beam search (beams are reordered and duplicated between steps), assisted
decoding (drafts are verified, then cut) and reuse of one processor for a second
``generate`` call with the same prompt correct without special cases.

Importing this module imports torch and transformers; ``grammask`` itself does not.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers.generation.logits_process import LogitsProcessor

from ..automata.batch import BatchGrammarMatcher
from ..automata.compiled_grammar import CompiledGrammar
from ..automata.compiler import GrammarCompiler
from ..automata.matcher import GrammarMatcher
from ..automata.tokenizer_info import TokenizerInfo
from ..errors import TokenizerError
from ..mask_kernels.bitmask import allocate_token_bitmask, apply_token_bitmask_inplace

__all__ = ["GrammaskLogitsProcessor"]


class _Row:
    """One row's matcher and how many of the row's generated tokens it has accepted.

    The tokens of a row after the first one its matcher did not take (a stop token was
    accepted, so the rest is padding; or a token the grammar forbids) are ignored: the row
    has ended and from then on only a stop token is allowed.
    """

    __slots__ = ("matcher", "n_accepted")

    def __init__(self, matcher: GrammarMatcher | None) -> None:
        self.matcher = matcher
        self.n_accepted = 0

    def reset(self) -> None:
        if self.matcher is not None:
            self.matcher.reset()
        self.n_accepted = 0

    def rewind(self, n_tokens: int) -> None:
        """Back to the state after the first ``n_tokens`` generated tokens."""
        if n_tokens < self.n_accepted:
            self.matcher.rollback(self.n_accepted - n_tokens)
            self.n_accepted = n_tokens

    def feed(self, token: int, position: int) -> None:
        """The generated token at ``position`` (0 = first generated token)."""
        if (self.matcher is not None and self.n_accepted == position
                and self.matcher.accept_token(token)):
            self.n_accepted += 1

    def ended(self, n_generated: int) -> bool:
        return self.n_accepted < n_generated or self.matcher.is_terminated()


class GrammaskLogitsProcessor(LogitsProcessor):
    """Masks the scores of every token the grammar does not allow next.

    Pass it to ``model.generate(..., logits_processor=LogitsProcessorList([processor]))``.
    Works with greedy search, sampling (the mask is applied before temperature, top-k and
    top-p, which transformers runs after custom processors), ``num_return_sequences``, beam
    search, assisted decoding and left-padded batches. Scores on the CPU are masked by the
    Numba kernel; scores on an accelerator by torch operations on the device.

    Once a row's matcher has accepted a stop token, or the row produced a token the grammar
    does not allow (a beam search candidate whose score was already ``-inf``, or a token some
    later processor forced), only stop tokens are allowed for that row. A grammar that is
    complete and cannot continue allows only stop tokens by itself.

    ``min_new_tokens`` (which forbids eos) conflicts with a grammar that is complete and
    allows only eos: that row then has no allowed token left, and sampling fails.

    One processor serves one ``generate`` call at a time. It notices a new call when the
    batch size changes, the prompt differs, or the sequences grew by more than one token;
    call :meth:`reset` to be explicit.

    Args:
        compiled_grammars: one :class:`~grammask.CompiledGrammar` for every row, or a list
            with one per prompt of the batch (``None``: that prompt is not constrained). When
            ``generate`` expands each prompt into ``k`` rows (``num_beams``,
            ``num_return_sequences``), each of them uses its prompt's grammar. All grammars
            must be compiled for the same vocabulary size.
        stop_token_ids: the ids that end a row (the model's ``eos_token_id``); by default
            each grammar's tokenizer stop tokens. Generation only stops when the model's
            ``generation_config.eos_token_id`` contains the token allowed here.
        max_threads: threads filling the bitmasks of a batch (-1: up to 8, at most the CPU
            count; 1: no thread pool).

    Raises:
        TypeError: something in ``compiled_grammars`` is not a CompiledGrammar.
        ValueError: no grammar, or grammars compiled for different vocabulary sizes.
        TokenizerError: a grammar's tokenizer has no stop token and none was given.
    """

    supports_continuous_batching = False

    def __init__(
        self,
        compiled_grammars: CompiledGrammar | Sequence[CompiledGrammar | None],
        *,
        stop_token_ids: int | Iterable[int] | None = None,
        max_threads: int = -1,
    ) -> None:
        if isinstance(compiled_grammars, CompiledGrammar):
            grammars: list[CompiledGrammar | None] = [compiled_grammars]
        else:
            grammars = list(compiled_grammars)
        if not grammars or all(g is None for g in grammars):
            raise ValueError("GrammaskLogitsProcessor needs at least one compiled grammar")
        vocab_sizes = set()
        for i, g in enumerate(grammars):
            if g is None:
                continue
            if not isinstance(g, CompiledGrammar):
                raise TypeError(
                    f"compiled_grammars[{i}] is a {type(g).__name__}, not a CompiledGrammar "
                    "(compile it with grammask.GrammarCompiler, or use from_json_schema / "
                    "from_grammar / from_regex)"
                )
            vocab_sizes.add(int(g.tokenizer_info.vocab_size))
        if len(vocab_sizes) != 1:
            raise ValueError(
                f"the grammars were compiled for different vocabulary sizes {sorted(vocab_sizes)}"
            )
        self._grammars = grammars
        self._vocab_size = vocab_sizes.pop()
        if isinstance(stop_token_ids, (int, np.integer)):
            stop_token_ids = [int(stop_token_ids)]
        self._stop_override = None if stop_token_ids is None else sorted(
            {int(t) for t in stop_token_ids})
        # the bitmask row that allows only the stop tokens, per grammar
        self._stop_rows: list[np.ndarray | None] = []
        for i, g in enumerate(grammars):
            if g is None:
                self._stop_rows.append(None)
                continue
            stops = self._stop_override
            if stops is None:
                stops = list(g.tokenizer_info.stop_token_ids)
            if not stops:
                raise TokenizerError(
                    f"the tokenizer of compiled_grammars[{i}] has no stop token: pass "
                    "stop_token_ids= (the model's eos_token_id)"
                )
            row = np.zeros(allocate_token_bitmask(1, self._vocab_size).shape[1], np.int32)
            for t in stops:
                if not 0 <= t < self._vocab_size:
                    raise ValueError(
                        f"stop token id {t} is outside the vocabulary [0, {self._vocab_size})"
                    )
                row[t >> 5] |= np.int32(1) << np.int32(t & 31)
            self._stop_rows.append(row)
        self._batch = BatchGrammarMatcher(max_threads)
        self._rows: list[_Row] = []
        self._row_grammar: list[int] = []
        self._prompt: torch.Tensor | None = None  # (rows, prompt length)
        self._last: torch.Tensor | None = None  # input_ids of the previous call
        self._bitmask: np.ndarray | None = None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_json_schema(
        cls,
        schema: Any,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        stop_token_ids: int | Iterable[int] | None = None,
        max_threads: int = -1,
        **compile_options: Any,
    ) -> GrammaskLogitsProcessor:
        """A processor for JSON that validates against ``schema``.

        Args:
            schema: a JSON Schema (dict, JSON text or pydantic model class), or a list with
                one per prompt of the batch.
            tokenizer: a transformers tokenizer, a ``tokenizers.Tokenizer``, a
                :class:`~grammask.TokenizerInfo` or a :class:`~grammask.GrammarCompiler`.
            vocab_size: the model's vocabulary size (``model.config.vocab_size``) when its
                logits are wider than the tokenizer's vocabulary. Scores past the
                vocabulary are masked either way.
            compile_options: passed to :meth:`GrammarCompiler.compile_json_schema`
                (``any_whitespace``, ``indent``, ``separators``, ``strict_mode``, ``lenient``).

        Raises:
            SchemaError, UnsupportedSchemaError: a schema does not compile.
            TokenizerError: the tokenizer's vocabulary cannot be read.
        """
        compiler = _compiler_for(tokenizer, vocab_size)
        schemas = schema if isinstance(schema, (list, tuple)) else [schema]
        compiled = [None if s is None else compiler.compile_json_schema(s, **compile_options)
                    for s in schemas]
        return cls(compiled, stop_token_ids=stop_token_ids, max_threads=max_threads)

    @classmethod
    def from_grammar(
        cls,
        grammar: str | Sequence[str | None],
        tokenizer: Any,
        *,
        syntax: str = "auto",
        start: str | None = None,
        vocab_size: int | None = None,
        stop_token_ids: int | Iterable[int] | None = None,
        max_threads: int = -1,
    ) -> GrammaskLogitsProcessor:
        """A processor for a Lark or GBNF grammar (or a list, one per prompt). ``syntax`` and
        ``start`` are as for :meth:`GrammarCompiler.compile_grammar`; the other arguments as
        for :meth:`from_json_schema`. Raises :class:`~grammask.GrammarError`."""
        compiler = _compiler_for(tokenizer, vocab_size)
        grammars = [grammar] if isinstance(grammar, str) else list(grammar)
        compiled = [None if g is None else compiler.compile_grammar(g, syntax=syntax, start=start)
                    for g in grammars]
        return cls(compiled, stop_token_ids=stop_token_ids, max_threads=max_threads)

    @classmethod
    def from_regex(
        cls,
        pattern: str | Sequence[str | None],
        tokenizer: Any,
        *,
        flags: int = 0,
        vocab_size: int | None = None,
        stop_token_ids: int | Iterable[int] | None = None,
        max_threads: int = -1,
    ) -> GrammaskLogitsProcessor:
        """A processor for the strings ``re.fullmatch(pattern, s, flags)`` accepts (or a list
        of patterns, one per prompt); the other arguments as for :meth:`from_json_schema`.
        Raises :class:`~grammask.GrammarError`."""
        compiler = _compiler_for(tokenizer, vocab_size)
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        compiled = [None if p is None else compiler.compile_regex(p, flags=flags)
                    for p in patterns]
        return cls(compiled, stop_token_ids=stop_token_ids, max_threads=max_threads)

    # ------------------------------------------------------------------ state

    @property
    def compiled_grammars(self) -> list[CompiledGrammar | None]:
        """The grammars, one per prompt (as given)."""
        return list(self._grammars)

    @property
    def matchers(self) -> list[GrammarMatcher | None]:
        """The current matcher of each row (empty before the first call). Between calls,
        the matcher of row ``i`` has accepted the tokens row ``i`` generated, up to its end."""
        return [r.matcher for r in self._rows]

    def reset(self) -> None:
        """Forgets the current generation; the next call starts from its prompt."""
        self._prompt = None
        self._last = None

    # ------------------------------------------------------------------ the call

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Advances each row's matcher by the tokens appended to ``input_ids`` since the last
        call and sets the scores of the tokens they do not allow to ``-inf`` (in place).
        Returns ``scores``."""
        if input_ids.dim() != 2 or scores.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
            raise ValueError(
                f"expected input_ids (batch, length) and scores (batch, vocab), got "
                f"{tuple(input_ids.shape)} and {tuple(scores.shape)}"
            )
        if self._is_new_generation(input_ids):
            self._start(input_ids)
        else:
            self._advance(input_ids)
        self._last = input_ids.detach().clone()
        self._mask(scores, input_ids.shape[1] - self._prompt.shape[1])
        return scores

    def _is_new_generation(self, input_ids: torch.Tensor) -> bool:
        last, prompt = self._last, self._prompt
        if last is None or prompt is None:
            return True
        n_rows, length = input_ids.shape
        if n_rows != last.shape[0] or input_ids.device != last.device:
            return True
        if length > last.shape[1] + 1 or length < prompt.shape[1]:
            return True
        return not torch.equal(input_ids[:, : prompt.shape[1]], prompt)

    def _start(self, input_ids: torch.Tensor) -> None:
        n_rows = input_ids.shape[0]
        n_grammars = len(self._grammars)
        if n_rows % n_grammars:
            raise ValueError(
                f"the batch has {n_rows} rows, not a multiple of the {n_grammars} grammars "
                "given (one grammar per prompt)"
            )
        per_prompt = n_rows // n_grammars
        row_grammar = [r // per_prompt for r in range(n_rows)]
        if row_grammar == self._row_grammar:
            for row in self._rows:
                row.reset()
        else:
            self._rows = [_Row(self._new_matcher(self._grammars[g])) for g in row_grammar]
            self._row_grammar = row_grammar
            self._bitmask = allocate_token_bitmask(n_rows, self._vocab_size)
        self._prompt = input_ids.detach().clone()

    def _new_matcher(self, grammar: CompiledGrammar | None) -> GrammarMatcher | None:
        if grammar is None:
            return None
        return GrammarMatcher(grammar, override_stop_tokens=self._stop_override)

    def _advance(self, input_ids: torch.Tensor) -> None:
        last = self._last
        n_prompt = self._prompt.shape[1]
        n_before = last.shape[1] - n_prompt
        if input_ids.shape[1] == last.shape[1] + 1 and torch.equal(input_ids[:, :-1], last):
            # the usual step: every row appended one token to its own sequence
            for row, token in zip(self._rows, input_ids[:, -1].tolist()):
                row.feed(token, n_before)
            return
        self._realign(input_ids[:, n_prompt:].cpu(), last[:, n_prompt:].cpu())

    def _realign(self, new: torch.Tensor, old: torch.Tensor) -> None:
        """Gives each row the matcher whose tokens share the longest prefix with the row's
        generated tokens (within the rows of one prompt), rolls it back to that prefix and
        feeds it the rest."""
        n_rows, n_new = new.shape
        n_common = min(n_new, old.shape[1])
        per_prompt = n_rows // len(self._grammars)
        rows = [None] * n_rows
        for first in range(0, n_rows, per_prompt):
            sl = slice(first, first + per_prompt)
            same = new[sl, None, :n_common] == old[None, sl, :n_common]
            lcp = same.to(torch.int32).cumprod(-1).sum(-1).numpy()  # (new row, old row)
            # longest prefix first; on ties keep a matcher on its own row
            order = np.lexsort((np.eye(per_prompt, dtype=bool).ravel() == 0, -lcp.ravel()))
            taken_new = [False] * per_prompt
            taken_old = [False] * per_prompt
            for flat in order.tolist():
                i, j = divmod(flat, per_prompt)
                if taken_new[i] or taken_old[j]:
                    continue
                taken_new[i] = taken_old[j] = True
                row = self._rows[first + j]
                keep = int(lcp[i, j])
                if row.matcher is not None:
                    row.rewind(keep)
                    for pos, token in enumerate(new[first + i, keep:].tolist(), keep):
                        row.feed(token, pos)
                rows[first + i] = row
        self._rows = rows

    # ------------------------------------------------------------------ masking

    def _mask(self, scores: torch.Tensor, n_generated: int) -> None:
        bitmask = self._bitmask
        fill_matchers, fill_rows, constrained = [], [], []
        for i, row in enumerate(self._rows):
            if row.matcher is None:
                bitmask[i] = -1
                continue
            constrained.append(i)
            if row.ended(n_generated):
                bitmask[i] = self._stop_rows[self._row_grammar[i]]
            else:
                fill_matchers.append(row.matcher)
                fill_rows.append(i)
        if fill_matchers:
            needed = self._batch.batch_fill_next_token_bitmask(fill_matchers, bitmask, fill_rows)
            for i, need in zip(fill_rows, needed):
                if not need:
                    bitmask[i] = -1
        vocab = self._vocab_size
        if scores.device.type == "cpu":
            apply_token_bitmask_inplace(scores, bitmask, vocab_size=vocab)
        else:
            _apply_on_device(scores, bitmask, vocab)
        if scores.shape[1] > vocab:
            # logits of a padded embedding: ids past the tokenizer's vocabulary
            if len(constrained) == len(self._rows):
                scores[:, vocab:] = float("-inf")
            else:
                index = torch.tensor(constrained, dtype=torch.long, device=scores.device)
                scores[index, vocab:] = float("-inf")


def _apply_on_device(scores: torch.Tensor, bitmask: np.ndarray, vocab: int) -> None:
    """Masks scores that live on an accelerator: the bitmask is copied there and unpacked
    with torch operations."""
    words = torch.from_numpy(bitmask).to(scores.device)
    shifts = torch.arange(32, dtype=torch.int32, device=scores.device)
    allowed = ((words.unsqueeze(-1) >> shifts) & 1).bool().reshape(words.shape[0], -1)
    width = min(vocab, scores.shape[1])
    scores[:, :width].masked_fill_(~allowed[:, :width], float("-inf"))


# Building a TokenizerInfo and its token trie for a 128k vocabulary takes seconds: keep one
# compiler per tokenizer object (and vocabulary size) for the convenience constructors.
_compilers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_compilers_lock = threading.Lock()


def _compiler_for(tokenizer: Any, vocab_size: int | None) -> GrammarCompiler:
    if isinstance(tokenizer, GrammarCompiler):
        info = tokenizer.tokenizer_info
        if vocab_size is not None and int(vocab_size) != info.vocab_size:
            raise ValueError(
                f"vocab_size {vocab_size} differs from the compiler's tokenizer "
                f"({info.vocab_size}); build its TokenizerInfo with vocab_size={vocab_size}"
            )
        return tokenizer
    if isinstance(tokenizer, TokenizerInfo):
        if vocab_size is not None and int(vocab_size) != tokenizer.vocab_size:
            raise ValueError(
                f"vocab_size {vocab_size} differs from the TokenizerInfo's "
                f"({tokenizer.vocab_size}); build it with vocab_size={vocab_size}"
            )
        return GrammarCompiler(tokenizer)
    key = (vocab_size, _vocab_length(tokenizer))
    with _compilers_lock:
        try:
            per_tokenizer = _compilers.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable
            per_tokenizer = {}
        compiler = per_tokenizer.get(key)
    if compiler is None:
        info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        compiler = GrammarCompiler(info)
        with _compilers_lock:
            per_tokenizer[key] = compiler
    return compiler


def _vocab_length(tokenizer: Any) -> int | None:
    try:
        return len(tokenizer)
    except TypeError:
        get = getattr(tokenizer, "get_vocab_size", None)
        return get(with_added_tokens=True) if callable(get) else None
