"""generate(schema=/grammar=/regex=) on the bundled model: outputs always match."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from lark import Lark

import grammask as gm
from grammask.grammar.reference import is_viable_prefix

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "kind": {"enum": ["human", "robot", "cat"]},
    },
    "required": ["name", "age", "kind"],
    "additionalProperties": False,
}

LARK_LIST = r"""
start: "[" item ("," item)* "]"
item: WORD | NUMBER
%import common.WORD
%import common.NUMBER
"""

GBNF_DATE = r"""
root ::= year "-" month "-" day
year ::= [12] [0-9] [0-9] [0-9]
month ::= "0" [1-9] | "1" [0-2]
day ::= "0" [1-9] | [12] [0-9] | "3" [01]
"""


@pytest.fixture(scope="module")
def llm():
    return gm.LLM()


def _messages(text: str):
    return [{"role": "user", "content": text}]


def _check_prefix_or_full(llm, result, compiled, full_check):
    if result.finish_reason == "stop":
        full_check(str(result))
    else:
        assert result.finish_reason == "length"
        m = gm.GrammarMatcher(compiled)
        assert m.accept_string(str(result))  # a cut output is still a valid prefix


@pytest.mark.parametrize("seed,temperature", [(0, 0.0), (1, 0.7), (2, 1.0), (3, 1.3)])
def test_schema_outputs_validate(llm, seed, temperature):
    r = llm.generate(_messages("Describe a character as JSON."), schema=PERSON, seed=seed,
                     temperature=temperature, max_tokens=120)
    compiled = llm.grammar_compiler.compile_json_schema(PERSON, any_whitespace=False)

    def full(text):
        jsonschema.validate(json.loads(text), PERSON)
        assert r.json == json.loads(text)

    _check_prefix_or_full(llm, r, compiled, full)
    assert r.token_ids and r.forced_tokens <= len(r.token_ids)


def test_schema_finishes_and_uses_jump_forward(llm):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                              "confidence_percent": {"type": "integer",
                                                                     "minimum": 0,
                                                                     "maximum": 100}},
              "required": ["answer", "confidence_percent"], "additionalProperties": False}
    r = llm.generate(_messages("Is the sky blue? Answer in JSON."), schema=schema, seed=0,
                     temperature=0.0, max_tokens=80)
    assert r.finish_reason == "stop"
    jsonschema.validate(r.json, schema)
    assert r.forced_tokens > 0  # the property names are forced


def test_grammar_lark_and_gbnf_and_regex(llm):
    parser = Lark(LARK_LIST, parser="earley", lexer="dynamic_complete")
    for seed in (0, 1, 2):
        r = llm.generate(_messages("List a few things."), grammar=LARK_LIST, seed=seed,
                         temperature=0.8, max_tokens=40)
        if r.finish_reason == "stop":
            parser.parse(str(r))
        else:
            assert is_viable_prefix(gm.Grammar.from_lark(LARK_LIST), str(r).encode())
    date_re = re.compile(r"[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")
    for seed in (0, 1):
        r = llm.generate(_messages("When was the moon landing?"), grammar=GBNF_DATE, seed=seed,
                         max_tokens=20)
        assert r.finish_reason == "stop" and date_re.fullmatch(str(r)), str(r)
        r = llm.generate("The answer is ", regex=r"(yes|no), because [a-z ]{3,20}\.", seed=seed,
                         temperature=0.9, max_tokens=30)
        if r.finish_reason == "stop":
            assert re.fullmatch(r"(yes|no), because [a-z ]{3,20}\.", str(r)), str(r)
        else:
            assert re.match(r"(yes|no)", str(r)) or len(str(r)) < 3


def test_stream_equals_non_stream(llm):
    kwargs = dict(schema=PERSON, seed=5, temperature=0.9, max_tokens=60)
    whole = llm.generate(_messages("A robot, as JSON."), **kwargs)
    stream = llm.generate(_messages("A robot, as JSON."), stream=True, **kwargs)
    assert stream.result is None
    text = "".join(stream)
    assert text == str(whole)
    assert stream.result == whole and stream.result.finish_reason == whole.finish_reason


def test_length_cut_is_reported(llm):
    r = llm.generate(_messages("Describe a character."), schema=PERSON, seed=0, max_tokens=3)
    assert r.finish_reason == "length"
    with pytest.raises(ValueError, match="max_tokens"):
        r.json
    compiled = llm.grammar_compiler.compile_json_schema(PERSON, any_whitespace=False)
    assert gm.GrammarMatcher(compiled).accept_string(str(r))


def test_pydantic_like_model_class(llm):
    class Point:
        @classmethod
        def model_json_schema(cls):
            return {"type": "object", "properties": {"x": {"type": "integer"},
                                                     "y": {"type": "integer"}},
                    "required": ["x", "y"], "additionalProperties": False}

        @classmethod
        def model_validate(cls, value):
            obj = cls()
            obj.x, obj.y = value["x"], value["y"]
            return obj

    r = llm.generate(_messages("A point."), schema=Point, seed=1, temperature=0.0,
                     max_tokens=40)
    assert r.finish_reason == "stop"
    p = r.parsed
    assert isinstance(p, Point) and isinstance(p.x, int)


def test_bad_input_raises_before_generation(llm, monkeypatch):
    calls = []
    monkeypatch.setattr(llm, "prefill", lambda ids: calls.append(ids))
    with pytest.raises(gm.SchemaError):
        llm.generate("x", schema={"type": "object", "properties": {"a": {"$ref": "#/nope"}}})
    with pytest.raises(gm.GrammarError):
        llm.generate("x", grammar="start: undefined_rule", stream=True)
    with pytest.raises(gm.GrammarError):
        llm.generate("x", regex="(unclosed")
    with pytest.raises(ValueError, match="at most one"):
        llm.generate("x", schema=PERSON, regex="a")
    with pytest.raises(ValueError, match="empty prompt"):
        llm.generate("", schema=PERSON, stream=True)
    with pytest.raises(ValueError, match="stop strings"):
        llm.generate("x", regex="a+", stop=["b"])
    assert calls == []


def test_cli_generate_schema(tmp_path, capsys):
    from grammask.cli import main

    path = tmp_path / "s.json"
    path.write_text(json.dumps(PERSON))
    code = main(["generate", "--schema", str(path), "--seed", "2", "--temperature", "0",
                 "--max-tokens", "120", "Describe a cat."])
    out = capsys.readouterr().out
    assert code == 0
    jsonschema.validate(json.loads(out), PERSON)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["generate", "--schema", str(bad), "x"]) == 1
