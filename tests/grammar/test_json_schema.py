"""JSON Schema -> grammar: accepted texts agree with the jsonschema validator."""

from __future__ import annotations

import json
import random
import warnings

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grammask.errors import SchemaError, UnsupportedSchemaError
from grammask.grammar import ir
from grammask.grammar.json_formats import SUPPORTED_FORMATS, format_expr
from grammask.grammar.json_numbers import integer_range, multiple_automaton, number_range
from grammask.grammar.json_schema import (
    MAX_WHITESPACE,
    _plain_verdict,
    builtin_json_grammar,
    grammar_from_json_schema,
)

from .test_json_schema_oracle import direct_matches, matches

D7 = "http://json-schema.org/draft-07/schema#"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def validates(schema, value) -> bool:
    cls = jsonschema.validators.validator_for(schema if isinstance(schema, dict) else {})
    return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(value)


def styles(value) -> list[bytes]:
    """Serializations a model might write: compact, json.dumps default, indented."""
    return [
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
        json.dumps(value, ensure_ascii=False).encode(),
        json.dumps(value, ensure_ascii=False, indent=2).encode(),
    ]


def expr_grammar(e: ir.Expr) -> ir.Grammar:
    return ir.Grammar({"root": e}, "root")


# --------------------------------------------------------------------------- sampling


def sample(grammar: ir.Grammar, rng: random.Random, max_depth: int = 12) -> bytes | None:
    """A random member of the grammar's language (None when a walk gets stuck)."""
    out = bytearray()

    def gen(e: ir.Expr, depth: int) -> bool:
        if isinstance(e, ir.Empty):
            return True
        if isinstance(e, ir.Nothing):
            return False
        if isinstance(e, ir.Literal):
            out.extend(e.data)
            return True
        if isinstance(e, ir.ByteSet):
            lo, hi = rng.choice(e.ranges)
            out.append(rng.randint(lo, hi))
            return True
        if isinstance(e, ir.CharSet):
            lo, hi = rng.choice(e.ranges)
            hi = min(hi, lo + 300) if rng.random() < 0.8 else hi
            out.extend(chr(rng.randint(lo, hi)).encode())
            return True
        if isinstance(e, ir.Seq):
            return all(gen(i, depth) for i in e.items)
        if isinstance(e, ir.Alt):
            items = list(e.items)
            if depth > max_depth:  # prefer leaves when deep
                items.sort(key=lambda x: isinstance(x, (ir.Ref, ir.Seq)))
                return gen(items[0], depth)
            return gen(rng.choice(items), depth)
        if isinstance(e, ir.Repeat):
            top = e.max if e.max is not None else e.min + 3
            n = rng.randint(e.min, min(top, e.min + 4)) if depth <= max_depth else e.min
            return all(gen(e.item, depth) for _ in range(n))
        if isinstance(e, ir.Ref):
            return gen(grammar.rules[e.name], depth + 1)
        if isinstance(e, ir.Automaton):
            state = e.start
            for _ in range(200):
                if e.accepting[state] and (rng.random() < 0.3 or not e.edges[state]):
                    return True
                if not e.edges[state]:
                    return False
                lo, hi, dst = rng.choice(e.edges[state])
                out.append(rng.randint(lo, hi))
                state = dst
            return e.accepting[state]
        raise TypeError(e)

    return bytes(out) if gen(grammar.rules[grammar.start], 0) else None


def assert_sound(schema, grammar, n=60, seed=0):
    """Every sampled member of the language is valid JSON that validates."""
    rng = random.Random(seed)
    got = 0
    for _ in range(n * 3):
        data = sample(grammar, rng)
        if data is None:
            continue
        value = json.loads(data)
        assert validates(schema, value), (data, schema)
        got += 1
        if got >= n:
            break


def check(schema, valid=(), invalid=(), **options):
    g = grammar_from_json_schema(schema, **options)
    for v in valid:
        assert validates(schema, v), f"test bug: {v!r} is not valid"
        for text in styles(v):
            assert matches(g, text), f"valid {text!r} rejected"
    for v in invalid:
        assert not validates(schema, v), f"test bug: {v!r} is valid"
        for text in styles(v):
            assert not matches(g, text), f"invalid {text!r} accepted"
    assert_sound(schema, g)
    return g


# --------------------------------------------------------------------------- numbers


@SETTINGS
@given(st.integers(-10**6, 10**6), st.integers(0, 10**6), st.integers(-10**7, 10**7))
def test_integer_range_exact(lo, width, x):
    g = expr_grammar(integer_range(lo, lo + width))
    assert direct_matches(g, str(x).encode()) == (lo <= x <= lo + width)


@SETTINGS
@given(st.one_of(st.none(), st.integers(-10**20, 10**20)), st.integers(-10**21, 10**21))
def test_integer_half_ranges(bound, x):
    assert direct_matches(expr_grammar(integer_range(bound, None)), str(x).encode()) == (bound is None or x >= bound)
    assert direct_matches(expr_grammar(integer_range(None, bound)), str(x).encode()) == (bound is None or x <= bound)


def test_integer_text_is_canonical():
    g = expr_grammar(integer_range(-5, 500))
    for bad in (b"007", b"-0", b"+5", b"5.0", b"1e2", b""):
        assert not direct_matches(g, bad)


@SETTINGS
@given(st.integers(1, 60), st.integers(-10**9, 10**9))
def test_multiple_automaton(k, x):
    g = expr_grammar(multiple_automaton(k))
    assert direct_matches(g, str(x).encode()) == (x % k == 0)


bounds = st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1000, 1000, allow_nan=False).map(lambda v: round(v, 3)))
decimals = st.builds(
    lambda i, f, neg: ("-" if neg else "") + str(i) + ("." + f if f else ""),
    st.integers(0, 1200),
    st.text("0123456789", max_size=5),
    st.booleans(),
)


@SETTINGS
@given(bounds, bounds, bounds, bounds, decimals)
def test_number_range_agrees_with_validator(mn, mx, xmn, xmx, text):
    schema = {"type": "number"}
    for k, v in (("minimum", mn), ("maximum", mx), ("exclusiveMinimum", xmn), ("exclusiveMaximum", xmx)):
        if v is not None:
            schema[k] = v
    g = expr_grammar(number_range(mn, mx, xmn, xmx))
    if text == "-0":  # negative zero integer text: never produced, valid when 0 is in range
        return
    got = direct_matches(g, text.encode())
    want = validates(schema, json.loads(text))
    if got:
        assert want, (schema, text)
    else:
        # exact away from the bounds: texts within 1e-9 of a bound may be left out
        value = float(json.loads(text))
        near = any(v is not None and abs(value - v) < 1e-9 for v in (mn, mx, xmn, xmx))
        assert not want or near, (schema, text)


def test_number_bound_edge_cases():
    check({"type": "number", "minimum": 0}, [0, 0.0, 5, 1.5e300, 1e-300], [-1, -0.5])
    check({"type": "number", "exclusiveMinimum": 0}, [1, 0.001, 7.25], [0, 0.0, -3])
    check({"type": "number", "minimum": 0.1, "maximum": 0.3}, [0.1, 0.2, 0.3, 0.25], [0.09, 0.31, 1])
    check({"type": "integer", "minimum": 1.5, "exclusiveMaximum": 10}, [2, 9], [1, 10, 2.5])
    check({"type": "integer", "multipleOf": 7, "minimum": -20, "maximum": 30}, [-14, 0, 28], [-21, 35, 8])
    check({"type": "number", "multipleOf": 0.5}, [1, 2, -3], [0.3])
    check({"type": "number", "multipleOf": 1, "minimum": 0}, [0, 7, 100], [100.1, 0.5, -1])
    g = check({"type": "number", "multipleOf": 0.01, "exclusiveMaximum": 100}, [3, 99], [100, 101])
    assert matches(g, b"99.0") and matches(g, b"0.00") and not matches(g, b"100.0")
    assert not matches(g, b"99.") and matches(g, b"1.50") and not matches(g, b"1.51")
    # a decimal multipleOf: its multiples exact in binary are exact for the validator too
    g = check({"type": "number", "multipleOf": 0.01, "minimum": -600}, [8.25, -500.5, 0.75, 3],
              [-600.25, 0.001, 0.125])
    assert matches(g, b"8.250") and matches(g, b"-0.25") and not matches(g, b"8.2501")
    check({"type": "number", "multipleOf": 0.25}, [1.5, -0.75, 2], [0.3, 1.125])
    check({"type": "number", "multipleOf": 0.001}, [0.125, 7.5], [0.0625])
    g = check({"type": "integer", "multipleOf": 3}, [3, -6], [4])
    assert not matches(g, b"3.0")  # an integer type keeps integer spellings
    check({"type": "number", "multipleOf": 0.01}, [1, 2, 300], [0.001])
    # draft-4 boolean exclusive bounds
    check({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer", "minimum": 3, "exclusiveMinimum": True}, [4], [3])
    # elsewhere the validator reads the boolean as a number (True == 1): both readings hold
    check({"type": "number", "minimum": 0, "exclusiveMinimum": True}, [2, 1.5], [0, 0.5, 1])


def test_float_multiple_that_float_division_breaks_is_refused():
    # 3 / 0.1 == 30.000000000000004: integer multiples are not safe
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema({"type": "number", "multipleOf": 0.1})
    assert e.value.keyword == "multipleOf"


def test_multiple_of_refusal_points_at_the_keyword():
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema({"properties": {"n": {"type": "integer", "multipleOf": 1000003}}})
    assert e.value.pointer == "#/properties/n/multipleOf"


# --------------------------------------------------------------------------- strings


text_st = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@SETTINGS
@given(st.integers(0, 4), st.integers(0, 4), text_st, st.booleans())
def test_string_lengths_count_code_points(lo, extra, s, ascii_only):
    schema = {"type": "string", "minLength": lo, "maxLength": lo + extra}
    g = grammar_from_json_schema(schema)
    data = json.dumps(s, ensure_ascii=ascii_only).encode()
    assert matches(g, data) == validates(schema, s)


def test_string_escapes_and_surrogates():
    g = grammar_from_json_schema({"type": "string", "maxLength": 1})
    assert matches(g, b'"\\ud83d\\ude00"')  # one character, as a surrogate pair
    assert matches(g, '"😀"'.encode())
    assert matches(g, b'"\\u00e9"') and matches(g, b'"\\n"') and matches(g, b'"\\/"')
    assert not matches(g, b'"\\ud83d"')  # lone surrogate
    assert not matches(g, b'"\\x41"') and not matches(g, b'"\n"') and not matches(g, b'"ab"')


def test_lone_surrogates_named_by_the_schema():
    """A schema's JSON text may name a string with a lone surrogate ("\\ud800"): such a const,
    enum value or property name is spelled as that escape (the one JSON spelling that decodes
    to it), and a not-value or propertyNames value holding one excludes or adds nothing (free
    text never holds a lone surrogate). The validator decides every verdict."""
    cases = [
        ({"const": "\ud800"}, [b'"\\ud800"'], [b'"\\ud801"', b'""']),
        ({"enum": ["a", "x\udfff"]}, [b'"a"', b'"x\\udfff"'], [b'"x"', b'"x\\udffe"']),
        ({"type": "object", "properties": {"\ud800": {"type": "integer"}}, "required": ["\ud800"],
          "additionalProperties": False}, [b'{"\\ud800":1}', b'{ "\\ud800" : 2 }'],
         [b'{}', b'{"\\ud800":"s"}', b'{"\\ud801":1}']),
        ({"type": "object", "properties": {"\ud800": {"type": "integer"}},
          "additionalProperties": True},
         [b'{"\\ud800":1}', b'{"a":"s"}', b'{}'], [b'{"\\ud800":"s"}']),
        ({"const": {"k\ud800": [1]}}, [b'{"k\\ud800":[1]}'], [b'{"k":[1]}']),
        ({"type": "string", "not": {"enum": ["\ud800", "b"]}}, [b'"a"', b'""'], [b'"b"']),
        ({"type": "object", "propertyNames": {"enum": ["\ud800", "b"]}},
         [b'{"b":1}', b'{}'], [b'{"c":1}']),
        ({"type": "array", "items": {"enum": ["\ud800", "a"]}, "uniqueItems": True},
         [b'["\\ud800","a"]', b'[]'], [b'["a","a"]', b'["\\ud800","\\ud800"]']),
    ]
    for schema, valid, invalid in cases:
        g = grammar_from_json_schema(schema)
        for text in valid:
            assert validates(schema, json.loads(text)), f"test bug: {text!r}"
            assert matches(g, text), (schema, text)
        for text in invalid:
            assert not validates(schema, json.loads(text)), f"test bug: {text!r}"
            assert not matches(g, text), (schema, text)
        assert_sound(schema, g, n=20)
    # a high and a low surrogate as two characters of a Python string: JSON text would read
    # them as one character, so no output can equal the value
    with pytest.raises(SchemaError, match="surrogate pair.*at #\\)"):
        grammar_from_json_schema({"const": "\ud83d\ude00"})
    with pytest.raises(SchemaError, match="surrogate pair.*at #/properties/a/items\\)"):
        grammar_from_json_schema({"type": "object", "properties": {
            "a": {"type": "array", "items": {"enum": ["x", "\ud83d\ude00"]}}}})
    with pytest.raises(SchemaError, match="surrogate pair.*at #/properties/b\\)"):
        grammar_from_json_schema({"type": "object", "properties": {
            "b": {"type": "object", "properties": {"\ud83d\ude00": {}}}}})


@pytest.mark.parametrize("name", SUPPORTED_FORMATS)
def test_formats_are_subsets_of_the_checker(name):
    schema = {"type": "string", "format": name}
    g = expr_grammar(format_expr(name))
    rng = random.Random(name)
    n = 0
    for _ in range(600):
        data = sample(g, rng)
        if data is None:
            continue
        assert validates(schema, data.decode()), (name, data)
        n += 1
    assert n > 100


FORMAT_EXAMPLES = {
    "date": (["2024-02-29", "1999-12-31", "0001-01-01"], ["2023-02-29", "2024-13-01", "24-01-01", "2024-04-31"]),
    "time": (["12:34:56Z", "23:59:59.123+05:30"], ["24:00:00Z", "12:34:56", "12:60:00Z"]),
    "date-time": (["2024-01-15T08:30:00Z", "2020-02-29T00:00:00.5-01:00"], ["2024-01-15 08:30:00Z", "2024-01-15T08:30:00"]),
    "duration": (["P1Y", "P3Y6M4DT12H30M5S", "PT5M", "P2W"], ["P", "PT", "1Y", "P1H"]),
    "email": (["a.b@example.com", "x@y"], ["no-at-sign"]),
    "hostname": (["example.com", "a-b.c", "localhost"], ["-bad.com", "a..b", "under_score.com"]),
    "ipv4": (["192.168.0.1", "0.0.0.0", "255.255.255.255"], ["256.1.1.1", "01.2.3.4", "1.2.3"]),
    "ipv6": (["::1", "2001:db8::8a2e:370:7334", "1:2:3:4:5:6:7:8", "::"], ["1:2:3:4:5:6:7:8:9", ":::1", "g::1"]),
    "uuid": (["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400"]),
    "uri": (["https://example.com/a/b?x=1#frag", "urn:isbn:0451450523", "mailto:a@b.c"], ["//example.com", "no scheme", "/path"]),
    "uri-reference": (["/path/to", "https://e.com", "?q=1", "#top", "a/b"], ["a b", "http://e.com/ space"]),
}


@pytest.mark.parametrize("name", sorted(FORMAT_EXAMPLES))
def test_format_examples(name):
    good, bad = FORMAT_EXAMPLES[name]
    check({"type": "string", "format": name}, good, bad)


def test_unknown_format_is_an_annotation_and_checked_format_without_grammar_is_refused():
    check({"type": "string", "format": "int32"}, ["anything"], [3])
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema({"type": "string", "format": "regex"})
    assert e.value.keyword == "format" and e.value.pointer == "#/format"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        grammar_from_json_schema({"type": "string", "format": "regex"}, lenient=True)
    assert any("format" in str(x.message) for x in w)


def test_format_with_length_limits():
    check({"type": "string", "format": "email", "maxLength": 12}, ["ab@cd.ef"], ["abcdefgh@ijklmnop.qr"])
    check({"type": "string", "format": "date", "minLength": 10}, ["2024-01-01"], ["x"])


# --------------------------------------------------------------------------- values


def test_types_enum_const():
    check({"type": ["string", "null"]}, ["a", None], [1, True, [], {}])
    check({"type": "boolean"}, [True, False], [0, "true"])
    check({"enum": ["a", 1, None, [1, 2], {"k": "v"}]}, ["a", 1, None, [1, 2], {"k": "v"}], ["b", 2, [2, 1]])
    check({"const": {"a": [1, "x"]}}, [{"a": [1, "x"]}], [{"a": [1]}])
    check({"type": "string", "enum": ["a", 1, "bb"], "maxLength": 1}, ["a"], ["bb", 1])
    check({"type": "integer", "not": {"const": 3}, "minimum": 0, "maximum": 5}, [0, 2, 4, 5], [3, 6])
    check({"type": "string", "not": {"enum": ["x", "yy"]}}, ["", "y", "xx", "yyy"], ["x", "yy"])


def test_builtin_json_grammar():
    g = builtin_json_grammar()
    for v in [None, 1, -2.5e10, "s\u00e9\n", [1, [2, {"a": {}}]], {"x": [True, False]}]:
        for text in styles(v):
            assert matches(g, text)
    for bad in [b"{", b"[1,]", b"nul", b"{'a': 1}", b"01", b" 1"]:
        assert not matches(g, bad)


def test_objects():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
        "required": ["b"],
    }
    g = check(schema, [{"b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": True}], [{"a": 1}, {"b": 1}, []])
    # strict_mode (default): no keys beyond the declared ones
    assert not matches(g, b'{"b":"x","d":1}')
    # strict_mode=False: other keys allowed, after the declared ones
    g = check(schema, [{"b": "x", "zz": [1]}, {"a": 1, "b": "", "other": {"n": None}}], [{"b": "x", "a": "no"}], strict_mode=False)
    assert not matches(g, b'{"b":"x","a":"no"}')
    # additionalProperties schema
    check({"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}, [{"a": 1, "x": "s"}, {"y": "t"}], [{"x": 1}, {"a": "s"}])


def test_object_property_counts():
    schema = {
        "type": "object",
        "properties": {"a": {}, "b": {}, "c": {}},
        "minProperties": 1,
        "maxProperties": 2,
    }
    check(schema, [{"a": 1}, {"a": 1, "c": 2}, {"b": None}], [{}, {"a": 1, "b": 2, "c": 3}])
    check({"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2, "maxProperties": 3},
          [{"x": 1, "y": 2}, {"x": 1, "y": 2, "z": 3}], [{"x": 1}, {"a": 1, "b": 2, "c": 3, "d": 4}])


def test_pattern_properties_and_property_names():
    pytest.importorskip("grammask.grammar.regex")
    check({"type": "object", "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False},
          [{"x-a": 1}, {}], [{"x-a": "s"}, {"y": 1}])
    check({"type": "object", "propertyNames": {"maxLength": 2}}, [{"ab": 1}, {}], [{"abc": 1}])


def test_pattern_matching_any_key():
    """A pattern every key matches (".*", "", "(?s:.)*"; not "^.*$", whose "." stops at a
    newline) constrains nothing: such schemas skip the automaton products (the key is any key
    outside the declared ones); the verdicts stay the validator's, and a negated any-text
    pattern leaves no key."""
    pytest.importorskip("grammask.grammar.regex")
    from grammask.grammar.json_schema import _is_any_text
    from grammask.grammar.regex import regex_to_expr

    for pattern, every in [(".*", True), ("", True), ("(?s:.)*", True), ("^.*$", False),
                           (".", False), ("a", False), ("^a", False), ("^.{0,3}$", False)]:
        assert _is_any_text(regex_to_expr(pattern, semantics="search")) is every, pattern
    for pattern in (".*", ""):
        schema = {"type": "object", "patternProperties": {pattern: {"type": "string"}},
                  "properties": {"basic": {"type": "string"}, "n": {"maxLength": 1}},
                  "required": ["basic"]}
        g = check(schema, [{"basic": "x"}, {"basic": "x", "other": "y"}, {"basic": "", "n": "a"}],
                  [{"basic": 1}, {"basic": "x", "other": 1}, {"basic": "x", "n": "ab"},
                   {"basic": "x", "n": 1}], strict_mode=False)
        # an extra key: canonical up to where it leaves the declared keys ("0"), free after
        assert matches(g, b'{"basic":"x","n0\\u0030":"yz"}')
        assert not matches(g, b'{"basic":"x","n":"yz"}')  # "n" is declared: one character
    check({"type": "object", "patternProperties": {".*": {"type": "integer"}},
           "additionalProperties": False}, [{"a": 1}, {}], [{"a": "s"}])


def test_property_names_enum():
    check({"type": "object", "propertyNames": {"enum": ["a", "b"]}}, [{"a": 1, "b": 2}, {}], [{"c": 1}])


def test_arrays():
    check({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}, [[1], [1, 2, 3]], [[], [1, 2, 3, 4], ["a"]])
    g = check({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}, [[], ["a"], ["a", 1]], [[1], ["a", "b"]])
    assert not matches(g, b'["a",1,2]')  # strict_mode: nothing beyond the prefix
    check({"type": "array", "prefixItems": [{"type": "string"}]}, [["a", 1, None]], [[1]], strict_mode=False)
    check({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "null"}, "minItems": 2}, [["a", None, None]], [["a"], ["a", 1]])
    check({"$schema": D7, "type": "array", "items": [{"type": "string"}], "additionalItems": False}, [["a"], []], [["a", "b"]])
    check({"type": "array", "contains": {"const": 5}}, [[5], [1, 5], [5, 1, 2]], [[], [1, 2]])
    check({"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True}, [["a"], ["a", "c"], ["a", "b", "c"], []], [["a", "a"], ["d"]])
    check({"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "maxItems": 1}, [[1], []], [[1, 1]])
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema({"type": "array", "items": {"type": "string"}, "uniqueItems": True})
    assert e.value.keyword == "uniqueItems"


def test_combinators():
    check({"anyOf": [{"type": "string", "maxLength": 1}, {"type": "integer", "minimum": 10}]}, ["a", 11], ["ab", 9])
    check({"oneOf": [{"type": "string"}, {"type": "integer"}]}, ["a", 1], [None])
    check(
        {"type": "object", "oneOf": [
            {"properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]},
            {"properties": {"kind": {"const": "b"}, "y": {"type": "string"}}, "required": ["kind"]},
        ]},
        [{"kind": "a", "x": 1}, {"kind": "b", "y": "s"}],
        [{"kind": "c"}, {"kind": "a", "x": "s"}],
    )
    # overlapping branches: exact as "one branch and not the others" when negation works
    check({"oneOf": [{"type": "integer"}, {"minimum": 3}]}, [2, -7, "a", None], [3, 5])
    check({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, [{"a": 1}, {"b": 1}], [{"a": 1, "b": 2}, {}, 5], strict_mode=False)
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema({"oneOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "array", "maxItems": 2}]})
    assert e.value.keyword == "oneOf" and e.value.pointer == "#/oneOf"
    check({"allOf": [{"type": "integer"}, {"minimum": 3}, {"maximum": 5}]}, [3, 5], [2, 6, 4.5])
    check(
        {"allOf": [
            {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"type": "string"}}},
        ]},
        [{"a": 1}, {"a": 1, "b": "x"}],
        [{"b": "x"}, {"a": 1, "b": 2}],
        strict_mode=False,
    )
    check({"not": {"type": ["string", "object", "array", "null"]}}, [1, 2.5, True], ["a", None])
    check({"type": "object", "properties": {"a": {}}, "not": {"required": ["a"]}}, [{}], [{"a": 1}])
    # a property schema that accepts everything has an empty negation, not a refused one
    both = {"properties": {"b": {}}, "required": ["b"]}
    check({"type": "object", "properties": {"a": {"type": "array"}}, "not": both},
          [{"a": []}, {}], [{"b": []}, {"a": [], "b": 1}], strict_mode=False)
    check({"anyOf": [
        {"properties": {"a": {"type": "array"}}, "not": {"properties": {"b": {}}, "required": ["b"]}},
        {"properties": {"b": {"type": "array"}}, "not": {"properties": {"a": {}}, "required": ["a"]}},
    ]}, [{"a": []}, {"b": []}, {}], [{"a": [], "b": []}, {"a": 1}, 3], strict_mode=False)


def test_if_then_else_and_dependencies():
    schema = {
        "type": "object",
        "properties": {"kind": {"enum": ["n", "s"]}, "v": {}},
        "required": ["kind", "v"],
        "if": {"properties": {"kind": {"const": "n"}}},
        "then": {"properties": {"v": {"type": "number"}}},
        "else": {"properties": {"v": {"type": "string"}}},
    }
    check(schema, [{"kind": "n", "v": 1}, {"kind": "s", "v": "x"}], [{"kind": "n", "v": "x"}, {"kind": "s", "v": 1}])
    check({"type": "object", "properties": {"a": {}, "b": {}}, "dependentRequired": {"a": ["b"]}}, [{}, {"b": 1}, {"a": 1, "b": 2}], [{"a": 1}])
    check({"$schema": D7, "type": "object", "properties": {"a": {}, "b": {}}, "dependencies": {"a": {"required": ["b"]}}}, [{"a": 1, "b": 2}], [{"a": 1}])
    check({"$schema": D7, "type": "object", "properties": {"a": {}, "b": {}}, "dependencies": {"a": ["b"]}}, [{"a": 1, "b": 2}, {"b": 1}], [{"a": 1}])


def test_refs_and_recursion():
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "required": ["v"],
            }
        },
        "$ref": "#/$defs/node",
    }
    check(schema, [{"v": 1}, {"v": 1, "kids": [{"v": 2, "kids": []}, {"v": 3}]}], [{"v": 1, "kids": [{}]}, {"kids": []}])
    anchored = {"$id": "https://example.com/root.json", "definitions": {"a": {"$anchor": "A", "type": "string"}},
                "properties": {"x": {"$ref": "#A"}, "y": {"$ref": "root.json#/definitions/a"}}}
    check(anchored, [{"x": "s", "y": "t"}], [{"x": 1}])
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "definitions": {"i": {"type": "integer"}},
              "type": "array", "items": {"$ref": "#/definitions/i"}}
    check(draft4, [[1, 2]], [["a"]])


def test_errors_point_at_the_schema():
    with pytest.raises(SchemaError) as e:
        grammar_from_json_schema({"properties": {"a": {"$ref": "#/$defs/missing"}}})
    assert e.value.pointer == "#/properties/a/$ref"
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema({"$ref": "https://example.com/other.json"})
    assert e.value.keyword == "$ref"
    with pytest.raises(SchemaError) as e:
        grammar_from_json_schema({"type": "string", "pattern": "(unclosed"})
    assert e.value.pointer == "#/pattern"
    with pytest.raises(SchemaError) as e:
        grammar_from_json_schema({"type": "strin"})
    assert e.value.pointer == "#/type"
    with pytest.raises(SchemaError):
        grammar_from_json_schema("{not json")
    with pytest.raises(SchemaError) as e:
        grammar_from_json_schema({"minLength": -1})
    assert e.value.pointer == "#/minLength"


def test_schema_inputs():
    g = grammar_from_json_schema('{"type": "integer"}')
    assert matches(g, b"12")

    class Model:
        @staticmethod
        def model_json_schema():
            return {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    g = grammar_from_json_schema(Model)
    assert matches(g, b'{"n": 1}') and not matches(g, b"{}")


# --------------------------------------------------------------------------- layout


def test_whitespace_is_bounded():
    g = grammar_from_json_schema({"type": "array", "items": {"type": "integer"}})
    assert matches(g, b"[" + b" " * MAX_WHITESPACE + b"1]")
    assert not matches(g, b"[" + b" " * (MAX_WHITESPACE + 1) + b"1]")
    assert not matches(g, b" [1]")


def test_compact_and_indented_layouts():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}, "b": {"type": "object"}}, "required": ["a", "b"]}
    value = {"a": [1, 2], "b": {}}
    g = grammar_from_json_schema(schema, any_whitespace=False)
    assert matches(g, json.dumps(value).encode())
    assert not matches(g, json.dumps(value, separators=(",", ":")).encode())
    g = grammar_from_json_schema(schema, any_whitespace=False, separators=(",", ":"))
    assert matches(g, json.dumps(value, separators=(",", ":")).encode())
    assert not matches(g, json.dumps(value).encode())
    for indent in (2, 4, "\t"):
        g = grammar_from_json_schema(schema, any_whitespace=False, indent=indent)
        assert matches(g, json.dumps(value, indent=indent).encode())
        assert not matches(g, json.dumps(value).encode())
        assert not matches(g, json.dumps(value, indent=3 if indent != 3 else 2).encode())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
))
def test_indent_layout_matches_json_dumps(value):
    g = grammar_from_json_schema(True, any_whitespace=False, indent=2)
    assert matches(g, json.dumps(value, indent=2, ensure_ascii=False).encode())


# --------------------------------------------------------------------------- budget


def test_large_schema_compiles_within_budget():
    props = {f"p{i}": {"type": "object", "properties": {f"q{j}": {"type": "integer", "minimum": j} for j in range(20)}} for i in range(300)}
    schema = {"type": "object", "properties": props}
    g = grammar_from_json_schema(schema)
    assert len(g.rules) < 4 * 300 * 21  # linear in the schema
    with pytest.raises(UnsupportedSchemaError) as e:
        grammar_from_json_schema(schema, max_seconds=0.0)
    assert e.value.keyword == "$budget"


def test_shared_refs_make_one_rule():
    schema = {"$defs": {"big": {"type": "object", "properties": {f"k{i}": {"type": "string"} for i in range(30)}}},
              "type": "array", "prefixItems": [{"$ref": "#/$defs/big"}] * 20}
    g = grammar_from_json_schema(schema)
    # the 20 uses share the rules of the target (about 100 rules, not 20 copies)
    assert len(g.rules) < 150


def test_patterns_are_searches_over_decoded_text():
    pytest.importorskip("grammask.grammar.regex")
    check({"type": "string", "pattern": "^[a-z]+$"}, ["abc", "z"], ["", "ab1", "ABC"])
    check({"type": "string", "pattern": "b+"}, ["abbbc", "b"], ["", "ac"])  # unanchored
    # characters JSON must escape: the canonical spelling is accepted
    check({"type": "string", "pattern": '^a"b\\\\c\\n$'}, ['a"b\\c\n'], ["ab"])
    check({"type": "string", "pattern": "^x", "minLength": 2, "maxLength": 3}, ["xy", "xyz"], ["x", "xyzw", "yx"])
    check({"type": "string", "pattern": "^[0-9]{3}$", "format": "uuid"}, [], ["123"])
    check({"type": "string", "not": {"pattern": "^a"}}, ["b", ""], ["a", "ab"])


@SETTINGS
@given(st.text("ab\"\\\n", max_size=6))
def test_pattern_strings_agree_with_validator(s):
    pytest.importorskip("grammask.grammar.regex")
    schema = {"type": "string", "pattern": "^(a|\")*b?$", "maxLength": 4}
    g = grammar_from_json_schema(schema)
    assert matches(g, json.dumps(s, ensure_ascii=False).encode()) == validates(schema, s)


def _fresh_text(schema, **options) -> str:
    """The grammar text of ``schema`` converted in a process that converted nothing else."""
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from grammask.grammar.json_schema import grammar_from_json_schema\n"
            "schema, options = json.loads(sys.argv[1])\n"
            "sys.stdout.write(str(grammar_from_json_schema(schema, **options)))\n")
    return subprocess.run([sys.executable, "-c", code, json.dumps([schema, options])],
                          capture_output=True, text=True, check=True).stdout


def test_any_value_rules_do_not_depend_on_earlier_grammars():
    """The rules of any JSON value are made once per process and options and copied into
    later grammars: every grammar is the one a fresh process makes, whatever came before
    (a grammar that had made json_char before its any-value rules, or not; other options)."""
    schemas = [
        {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}},
        {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        {"properties": {"s": {"type": "string"}}, "additionalProperties": True},
        {"type": "object", "properties": {"n": {"type": "object"}}, "required": ["n"]},
        {},
    ]
    for options in ({"strict_mode": False}, {"strict_mode": True},
                    {"any_whitespace": False}, {"any_whitespace": False, "indent": 2}):
        for order in (schemas, schemas[::-1]):
            for schema in order:
                here = str(grammar_from_json_schema(schema, **options))
                assert here == _fresh_text(schema, **options), (schema, options)


def test_any_value_rules_give_way_to_a_schema_rule_of_the_same_name():
    grammar_from_json_schema({"type": "object", "properties": {"a": {}}}, strict_mode=False)
    # "#/any_value" is a schema location here: its rule takes the name first
    schema = {"any_value": {"type": "integer"},
              "type": "object", "properties": {"p": {"$ref": "#/any_value"}, "q": {}}}
    g = grammar_from_json_schema(schema, strict_mode=False)
    assert str(g) == _fresh_text(schema, strict_mode=False)
    assert matches(g, b'{"p": 1, "q": [true, {"z": null}]}')
    assert not matches(g, b'{"p": "one"}')


_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2),
                         st.sampled_from(["", "a", "b"]))
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=2),
                            st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)),
    max_leaves=4)
_TYPE_NAMES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array",
                               "object", "any"])
_PLAIN_SCHEMAS = st.dictionaries(
    st.sampled_from(["type", "enum", "const", "description", "default", "minimum", "format"]),
    st.one_of(_TYPE_NAMES, st.lists(_TYPE_NAMES, max_size=3), st.lists(_JSON_VALUES, max_size=3),
              _JSON_VALUES),
    max_size=3)
_DRAFTS = [jsonschema.Draft3Validator, jsonschema.Draft4Validator, jsonschema.Draft6Validator,
           jsonschema.Draft7Validator, jsonschema.Draft201909Validator,
           jsonschema.Draft202012Validator]


@settings(max_examples=400, deadline=None)
@given(_JSON_VALUES, _PLAIN_SCHEMAS)
def test_plain_verdicts_agree_with_the_validator(value, schema):
    """The converter's shortcut for enum values checked against a schema with only ``type``
    and ``enum``: where it answers, every draft's validator gives the same answer."""
    verdict = _plain_verdict(value, schema)
    if verdict is None:
        return
    for cls in _DRAFTS:
        try:
            truth = cls(schema).is_valid(value)
        except Exception:  # noqa: BLE001 - a schema the draft cannot read: no shortcut then
            pytest.fail(f"shortcut answered for a schema {cls.__name__} cannot read")
        assert verdict == truth, (cls.__name__, schema, value)
