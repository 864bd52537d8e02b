"""JSON Schema -> grammar IR: the JSON texts that validate against a schema.

Every keyword is either enforced exactly or refused. "Exactly" means: every text the grammar
accepts validates with the ``jsonschema`` package (its ``FormatChecker`` included), and the
grammar accepts the usual spellings of valid values. Where the full set of valid texts is not
context-free (or not reasonably small), the grammar produces a documented subset; where even a
useful subset is out of reach, :class:`UnsupportedSchemaError` names the keyword and its JSON
pointer (with ``lenient=True`` the keyword is dropped with a warning instead).

How the pieces fit
------------------
A subschema is turned into a *fact set* (:class:`_Facts`): the conjunction of everything that
applies to the value (``allOf`` branches and ``$ref`` siblings are merged in). Disjunctions
(``anyOf``, disjoint ``oneOf``, ``if``/``then``/``else``, dependencies) stay as groups of
alternatives that are expanded one group at a time, each alternative merged with the rest.
Each set of merged subschemas becomes one grammar rule, so a ``$ref`` target used in many
places (or recursively) is one rule.

Choices worth knowing (the subsets)
-----------------------------------
- Layout. ``any_whitespace=True`` (default): between tokens, a run of at most
  :data:`MAX_WHITESPACE` JSON whitespace characters (so a model cannot loop on spaces); no
  whitespace before or after the top-level value. ``any_whitespace=False``: exactly the layout
  ``json.dumps`` writes with the given ``indent`` and ``separators``; like ``json.dumps`` (and
  XGrammar), the default separators are ``(", ", ": ")`` without indent and ``(",", ": ")``
  with one. With ``indent`` the nesting depth is limited to :data:`MAX_INDENT_DEPTH` levels.
- Objects list properties in schema order (required ones present, optional ones may be left
  out); other allowed keys (``additionalProperties``, ``patternProperties``) come after them.
  Duplicate keys among those other keys are not prevented (``json.loads`` keeps the last).
- ``strict_mode=True``: an object schema that declares ``properties`` or
  ``patternProperties`` but not ``additionalProperties`` (nor ``unevaluatedProperties``)
  allows no other keys, and an array schema with ``prefixItems`` (or array-form ``items``)
  and no ``items``/``additionalItems`` allows no further items. A schema that declares none of
  them (``{"type": "object"}``) still allows any object or array. ``strict_mode=False``
  follows JSON Schema: unspecified means anything.
- Strings: the canonical spelling of a character (``json.dumps`` with ``ensure_ascii=False``)
  when a pattern or format applies; any escape spelling otherwise. Lengths count code points.
  Lone surrogate escapes are never produced.
- Numbers: no exponent under bounds other than ``minimum: 0``; integers never carry a fraction
  or exponent; a float ``multipleOf`` allows its integer multiples (written with an optional
  zero fraction) and, for one decimal ``multipleOf`` on a number, its multiples exact in
  binary (8.25 for 0.01): a sound subset, since the validator's float test makes the exact set
  non-regular (see json_numbers).
- ``format`` values the ``jsonschema`` checker does not know are annotations and are ignored
  (the validator ignores them too); known formats without a language here are refused.
- ``uniqueItems``: exact when at most one item fits, or when items come from a finite set of
  values (then values appear in the order the schema lists them).
- Compile budget: ``MAX_COMPILE_SECONDS`` and ``MAX_RULES`` bound each conversion; past
  either, :class:`UnsupportedSchemaError` (keyword ``$budget``) is raised, in lenient mode too.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from fractions import Fraction

from ..errors import GrammarError, SchemaError, UnsupportedSchemaError
from .fsm import limits as fsm_limits
from . import json_numbers as num
from .ir import (
    EMPTY,
    NOTHING,
    Alt,
    ByteSet,
    CharSet,
    Empty,
    Expr,
    Grammar,
    Literal,
    Nothing,
    Ref,
    Repeat,
    Seq,
    alt,
    any_char,
    char_ranges,
    intern_node,
    lit,
    refs_of,
    rep,
    seq,
    star,
    subtract_ranges,
)
from .json_formats import CHECKED_ELSEWHERE, format_expr
from .json_refs import Loc, SchemaIndex
from .json_strings import encode_text, encode_text_expr, json_char, keys_outside, quoted

MAX_WHITESPACE = 20
MAX_INDENT_DEPTH = 16
MAX_COMPILE_SECONDS = 20.0
MAX_RULES = 200_000
MAX_ALTERNATIVES = 512  # expanded combinations of anyOf/oneOf/if groups per subschema
MAX_OBJECT_STATES = 20_000  # (properties x count) states for min/maxProperties
MAX_PATTERN_KEYS = 4  # patternProperties regexes whose key regions are split exactly
MAX_DFA_STATES = 100_000
MAX_PRODUCT = 200_000  # states of an automaton product attempted during conversion

ALL_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")

#: The schema ``true`` where no schema constrains a value (a pointer of its own: it names
#: the rules of any JSON value).
_ANY_VALUE = Loc(True, "#/any_value", "")

#: the rules of any JSON value, by _Converter._any_value_key: (its rule's name, the rules its
#: emission added, the earlier rules they refer to); see _Converter._keep_any_value
_ANY_VALUE_RULES: dict[tuple, tuple[str, dict, dict]] = {}

_ANNOTATIONS = frozenset(
    {
        "title", "description", "default", "examples", "example", "$comment", "$schema", "$id",
        "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$vocabulary", "readOnly",
        "writeOnly", "deprecated", "contentEncoding", "contentMediaType", "contentSchema",
        "definitions", "$defs",
    }
)
# Keywords with meaning for validation that are handled outside the per-keyword switch or that
# belong to another keyword (then/else with if, minContains with contains...).
_COMPANIONS = frozenset({"then", "else", "minContains", "maxContains", "additionalItems"})


_NOT_NAME = re.compile(r"[^A-Za-z0-9_]+")
#: JSON pointer -> the rule name made of it (before numbering); the same pointers come back in
#: every conversion of a schema family (#/properties/name/...)
_RULE_BASES: dict[str, str] = {}


def _json_equal(a, b) -> bool:
    """Equality as JSON Schema defines it (1 == 1.0, True != 1, objects unordered)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


#: keywords that never fail an instance (under any draft the validator knows)
_NO_VERDICT = frozenset({
    "title", "description", "default", "examples", "example", "$comment", "$schema", "$id",
    "id", "$anchor", "readOnly", "writeOnly", "deprecated", "definitions", "$defs",
})
_PLAIN_TYPES = {type(None): ("null",), bool: ("boolean",), int: ("integer", "number"),
                str: ("string",), list: ("array",), dict: ("object",)}


def _plain_verdict(value, schema) -> bool | None:
    """Whether ``value`` is valid under ``schema`` when the schema only says ``type`` and
    ``enum`` (besides annotations) and the value is no float: what every draft says then
    (they differ on 1.0 as an integer, and ``const`` is not a keyword before draft 6);
    None otherwise: the validator decides."""
    if type(schema) is not dict:
        return None
    names = _PLAIN_TYPES.get(type(value))
    if names is None:
        return None
    verdict = True
    for k, want in schema.items():
        if k == "type":
            if type(want) is str:
                want = (want,)
            elif type(want) is not list:
                return None
            if not all(t in ALL_TYPES for t in want):  # draft 3's "any", schemas as types
                return None
            if not any(t in names for t in want):
                verdict = False
        elif k == "enum":
            if type(want) is not list:
                return None
            if not any(_json_equal(value, w) for w in want):
                verdict = False
        elif k not in _NO_VERDICT:
            return None
    return verdict


def _type_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    raise SchemaError(f"not a JSON value: {v!r}")


class _NoNegation(Exception):
    """A negation was attempted quietly and is not expressible."""


class _ObjConj:
    """What one schema says about object keys."""

    __slots__ = ("additional", "patterns", "props")

    def __init__(self, props, patterns, additional):
        self.props: dict[str, Loc] = props
        self.patterns: list[tuple[str, Loc]] = patterns
        self.additional: Loc | None = additional

    def evaluates(self, name: str) -> bool:
        return name in self.props or self.additional is not None or any(
            re.search(p, name) for p, _ in self.patterns
        )

    def value_locs(self, name: str) -> list[Loc]:
        if name in self.props:
            out = [self.props[name]]
        else:
            out = []
        matched = [loc for p, loc in self.patterns if re.search(p, name)]
        out += matched
        if name not in self.props and not matched and self.additional is not None:
            out.append(self.additional)
        return out


class _ArrConj:
    __slots__ = ("prefix", "rest")

    def __init__(self, prefix, rest):
        self.prefix: list[Loc] = prefix
        self.rest: Loc | None = rest

    def at(self, i: int) -> Loc | None:
        return self.prefix[i] if i < len(self.prefix) else self.rest


class _Facts:
    """The conjunction of constraints on one value."""

    def __init__(self):
        self.false = False
        self.types: set[str] | None = None
        self.enum: list | None = None
        self.not_values: list = []
        self.sources: list[Loc] = []
        self.lower: list[tuple[object, bool]] = []
        self.upper: list[tuple[object, bool]] = []
        self.multiple: list[tuple[object, str]] = []
        self.min_len = 0
        self.max_len: int | None = None
        self.patterns: list[tuple[str, str]] = []
        self.not_patterns: list[tuple[str, str]] = []
        self.formats: list[tuple[str, str]] = []
        self.arr: list[_ArrConj] = []
        self.min_items = 0
        self.max_items: int | None = None
        self.contains: list[tuple[Loc, int, int | None, str]] = []
        self.unique: str | None = None
        self.unevaluated_items: list[Loc] = []
        self.obj: list[_ObjConj] = []
        self.required: list[str] = []
        self.forbid: set[str] = set()
        self.min_props = 0
        self.max_props: int | None = None
        self.prop_names: list[Loc] = []
        self.unevaluated_props: list[Loc] = []
        self.groups: list[tuple[str, str, list[list[Loc]]]] = []

    def copy(self) -> _Facts:
        f = _Facts.__new__(_Facts)
        for k, v in self.__dict__.items():
            if isinstance(v, list):
                v = list(v)
            elif isinstance(v, set):
                v = set(v)
            f.__dict__[k] = v
        return f

    def restrict_types(self, types) -> None:
        types = set(types)
        if "number" in types:
            types.add("integer")
        self.types = types if self.types is None else self.types & types


class _Layout:
    """Where whitespace goes."""

    def __init__(self, any_whitespace: bool, indent, separators):
        self.any_ws = any_whitespace
        if isinstance(indent, int) and not isinstance(indent, bool):
            indent = " " * indent if indent >= 0 else None
        if indent is not None and not isinstance(indent, str):
            raise GrammarError(f"indent must be an int or a string, not {indent!r}")
        self.indent = None if any_whitespace else indent
        if separators is None:
            separators = (",", ": ") if self.indent is not None else (", ", ": ")
        item, key = separators
        self.item_sep = item
        self.key_sep_text = key
        self.ws = Ref("ws")
        self._key_sep = seq(self.ws, lit(":"), self.ws) if self.any_ws else lit(key)
        self._between: dict[int, Expr] = {}  # by depth (0 where depth does not matter)

    @property
    def depth_matters(self) -> bool:
        return self.indent is not None

    def _nl(self, depth: int) -> Expr:
        return lit("\n" + self.indent * depth)

    def first(self, depth: int) -> Expr:
        if self.any_ws:
            return self.ws
        if self.indent is not None:
            return self._nl(depth + 1)
        return EMPTY

    def between(self, depth: int) -> Expr:
        d = depth if self.indent is not None else 0
        out = self._between.get(d)
        if out is None:
            if self.any_ws:
                out = seq(self.ws, lit(","), self.ws)
            elif self.indent is not None:
                out = seq(lit(self.item_sep), self._nl(depth + 1))
            else:
                out = lit(self.item_sep)
            self._between[d] = out
        return out

    def last(self, depth: int, nonempty: bool) -> Expr:
        if self.any_ws:
            return self.ws
        if self.indent is not None and nonempty:
            return self._nl(depth)
        return EMPTY

    def key_sep(self) -> Expr:
        return self._key_sep


class _Converter:
    def __init__(self, root, *, any_whitespace, indent, separators, strict_mode, lenient, budget):
        self.index = SchemaIndex(root)
        self.layout = _Layout(any_whitespace, indent, separators)
        self.strict = strict_mode
        self.lenient = lenient
        self.deadline = time.monotonic() + budget
        self.budget = budget
        self.rules: dict[str, Expr] = {}
        self.memo: dict[tuple, str] = {}
        self.names: set[str] = set()
        self.validators: dict = {}
        self.key_rules: dict[tuple, str] = {}
        self._neg_quiet = False
        self.alive: list = []
        dialect = root.get("$schema", "") if isinstance(root, dict) else ""
        self.draft4 = isinstance(dialect, str) and ("draft-04" in dialect or "draft-03" in dialect)

    # ------------------------------------------------------------------ plumbing

    def refuse(self, keyword: str, ptr: str, detail: str = "") -> None:
        """Refuse a keyword, or (lenient) warn that it is dropped."""
        if self.lenient:
            msg = f"keyword {keyword!r} at {ptr} is not enforced"
            warnings.warn(msg + (f": {detail}" if detail else ""), stacklevel=3)
            return
        raise UnsupportedSchemaError(keyword, ptr, detail)

    def check_budget(self, ptr: str) -> None:
        if len(self.rules) > MAX_RULES:
            raise UnsupportedSchemaError("$budget", ptr, f"grammar exceeds {MAX_RULES} rules")
        if time.monotonic() > self.deadline:
            raise UnsupportedSchemaError("$budget", ptr, f"conversion exceeds {self.budget:g} s")

    def fresh_name(self, ptr: str) -> str:
        base = _RULE_BASES.get(ptr)
        if base is None:
            base = _NOT_NAME.sub("_", ptr.lstrip("#")).strip("_") or "root"
            if len(base) > 60:
                base = base[-60:].lstrip("_")
            if len(_RULE_BASES) >= 4096:
                _RULE_BASES.clear()
            _RULE_BASES[ptr] = base
        name = base
        i = 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def is_valid(self, value, loc: Loc) -> bool:
        """Does ``value`` satisfy ``loc`` according to the jsonschema package?"""
        import jsonschema

        schema = loc.validation_schema
        if schema is True:
            return True
        if schema is False:
            return False
        quick = _plain_verdict(value, schema)
        if quick is not None:
            return quick
        key = id(schema)
        v = self.validators.get(key)
        if v is None:
            root = self.index.root
            cls = jsonschema.validators.validator_for(root if isinstance(root, dict) else {})
            base = cls(root if isinstance(root, (dict, bool)) else {}, format_checker=cls.FORMAT_CHECKER)
            v = base.evolve(schema=schema)
            self.validators[key] = (v, schema)
        else:
            v = v[0]
        try:
            return v.is_valid(value)
        except Exception:  # noqa: BLE001 - a broken subschema or unresolvable ref: be conservative
            return False

    # ------------------------------------------------------------------ entry

    def convert(self) -> Grammar:
        if self.layout.any_ws:
            self.rules["ws"] = rep(char_ranges([(0x20, 0x20), (0x0A, 0x0A), (0x0D, 0x0D), (0x09, 0x09)]), 0, MAX_WHITESPACE)
            self.names.add("ws")
        self.names.update({"root", "json_char"})
        start = self.value_rule([self.index.root_loc], 0)
        rules = dict(self.rules)
        rules["root"] = Ref(start)
        return Grammar(rules, "root")

    def json_char_ref(self) -> Ref:
        if "json_char" not in self.rules:
            self.rules["json_char"] = json_char()
        return Ref("json_char")

    # ------------------------------------------------------------------ values

    def value_rule(self, locs: list[Loc], depth: int) -> str:
        """Name of the rule for values satisfying all ``locs`` at nesting ``depth``."""
        locs = [self.deref(loc) for loc in locs]
        # any value: one rule (and its helpers) under the same names in every grammar, so
        # that their automata are shared between grammars (dfa_build's process-wide cache)
        locs = [loc for loc in locs if loc.node is not True and loc.node != {}] or [_ANY_VALUE]
        d = depth if self.layout.depth_matters else 0
        key = (tuple(sorted({(id(loc.node), id(loc.check)) for loc in locs})), d)
        name = self.memo.get(key)
        if name is not None:
            return name
        any_value = locs[0] is _ANY_VALUE and not self.layout.depth_matters
        if any_value:
            name = self._any_value_again()
            if name is not None:
                self.memo[key] = name
                return name
            before = set(self.rules)
            kept_as = self._any_value_key()
        self.check_budget(locs[0].ptr)
        name = self.fresh_name(locs[0].ptr)
        self.memo[key] = name
        self.alive.append(locs)  # the memo key holds ids: keep synthesized schemas alive
        self.rules[name] = NOTHING  # placeholder while recursing
        facts = _Facts()
        for loc in locs:
            self.absorb(facts, loc)
        try:
            self.rules[name] = self.emit(facts, d, locs[0].ptr)
        except SchemaError as exc:
            if exc.pointer is not None:
                raise
            # raised without a location (json_strings.encode_text): this value's
            raise SchemaError(str(exc), locs[0].ptr) from None
        if any_value:
            self._keep_any_value(name, before, kept_as)
        return name

    # The rules of any JSON value depend on the options alone: made once per process and
    # options, copied into later grammars (their nodes are shared, see ir.intern_node) in the
    # order the emission made them.

    def _any_value_key(self) -> tuple:
        L = self.layout
        return (L.any_ws, L.indent, L.item_sep, L.key_sep_text, self.strict, self.lenient,
                self.draft4, "json_char" in self.rules)

    def _keep_any_value(self, name: str, before: set[str], key: tuple) -> None:
        """Remembers rule ``name`` (any value) under ``key`` (the options and rules before
        its emission): the rules the emission added, in order, and the earlier rules it
        refers to."""
        reached = {name}
        stack = [name]
        while stack:
            for r in refs_of(self.rules[stack.pop()]):
                if r not in reached:
                    reached.add(r)
                    stack.append(r)
        added = {r: body for r, body in self.rules.items() if r in reached and r not in before}
        needed = {r: self.rules[r] for r in reached if r in before}
        if len(_ANY_VALUE_RULES) >= 64:
            _ANY_VALUE_RULES.clear()
        _ANY_VALUE_RULES[key] = (name, added, needed)

    def _any_value_again(self) -> str | None:
        """The rule of any value, copied with the rules it adds from an earlier grammar of
        the same options; None when there is none or the names differ here."""
        kept = _ANY_VALUE_RULES.get(self._any_value_key())
        if kept is None:
            return None
        name, added, needed = kept
        if any(self.rules.get(r) is not body for r, body in needed.items()):
            return None
        if any(r in self.rules or (r in self.names and r != "json_char") for r in added):
            return None
        for r, body in added.items():
            self.rules[r] = body
            self.names.add(r)
        return name

    def value(self, locs: list[Loc], depth: int) -> Expr:
        if self.layout.depth_matters and depth > MAX_INDENT_DEPTH:
            return NOTHING
        return Ref(self.value_rule(locs, depth))

    def deref(self, loc: Loc) -> Loc:
        """Follow a schema that is only a ``$ref`` (plus annotations) to its target."""
        seen = set()
        while isinstance(loc.node, dict) and "$ref" in loc.node and all(
            k == "$ref" or k in _ANNOTATIONS for k in loc.node
        ):
            if id(loc.node) in seen:
                raise SchemaError("$ref cycle that never reaches a schema", loc.ptr)
            seen.add(id(loc.node))
            loc = self.index.resolve(loc.node["$ref"], loc)
        return loc

    # ------------------------------------------------------------------ merging

    def absorb(self, f: _Facts, loc: Loc, stack: tuple = ()) -> None:
        """Add the constraints of ``loc`` to ``f``."""
        node = loc.node
        if node is True:
            return
        if node is False:
            f.false = True
            return
        if not isinstance(node, dict):
            raise SchemaError(f"a schema must be an object or a boolean, not {type(node).__name__}", loc.ptr)
        if id(node) in stack:
            raise UnsupportedSchemaError("$ref", loc.ptr, "a schema that includes itself through $ref/allOf")
        stack = stack + (id(node),)
        f.sources.append(loc)
        ptr = loc.ptr
        keys = node.keys()
        if "$ref" in node:
            self.absorb(f, self.index.resolve(node["$ref"], loc), stack)
        for kw in ("$dynamicRef", "$recursiveRef"):
            if kw in node:
                target = node[kw]
                if target == "#" or (isinstance(target, str) and target.startswith("#") and kw == "$dynamicRef"):
                    ref_loc = Loc({"$ref": target}, loc.ptr, loc.base)
                    try:
                        self.absorb(f, self.index.resolve(target, ref_loc), stack)
                    except SchemaError:
                        self.refuse(kw, f"{ptr}/{kw}", "dynamic reference")
                else:
                    self.refuse(kw, f"{ptr}/{kw}", "dynamic reference")
        if "type" in node:
            t = node["type"]
            ts = [t] if isinstance(t, str) else t
            if not isinstance(ts, list) or not all(isinstance(x, str) for x in ts):
                if isinstance(ts, list) and all(isinstance(x, (str, dict)) for x in ts):
                    self.refuse("type", f"{ptr}/type", "draft-3 schema unions")
                else:
                    raise SchemaError("type must be a string or a list of strings", f"{ptr}/type")
            else:
                bad = [x for x in ts if x not in ALL_TYPES and x != "any"]
                if bad:
                    raise SchemaError(f"unknown type {bad[0]!r}", f"{ptr}/type")
                if "any" not in ts:
                    f.restrict_types(ts)
        if "enum" in node:
            vals = node["enum"]
            if not isinstance(vals, list):
                raise SchemaError("enum must be an array", f"{ptr}/enum")
            self._restrict_enum(f, vals)
        if "const" in node:
            self._restrict_enum(f, [node["const"]])
        self._absorb_numeric(f, node, ptr)
        self._absorb_string(f, node, ptr)
        self._absorb_array(f, loc, node, ptr)
        self._absorb_object(f, loc, node, ptr)
        if "allOf" in node:
            subs = node["allOf"]
            if not isinstance(subs, list) or not subs:
                raise SchemaError("allOf must be a non-empty array", f"{ptr}/allOf")
            for i in range(len(subs)):
                self.absorb(f, loc.child("allOf", i), stack)
        for kw in ("anyOf", "oneOf"):
            if kw in node:
                subs = node[kw]
                if not isinstance(subs, list) or not subs:
                    raise SchemaError(f"{kw} must be a non-empty array", f"{ptr}/{kw}")
                f.groups.append((kw, f"{ptr}/{kw}", [[loc.child(kw, i)] for i in range(len(subs))]))
        if "not" in node:
            alts = self.negate(loc.child("not"), ())
            if alts is not None:
                f.groups.append(("not", f"{ptr}/not", [[a] for a in alts]))
        if "if" in node:
            cond = loc.child("if")
            then = loc.child("then") if "then" in node else Loc(True, ptr, loc.base)
            other = loc.child("else") if "else" in node else Loc(True, ptr, loc.base)
            if "then" in node or "else" in node:
                negs = self.negate(cond, ())
                if negs is not None:
                    alternatives = [[cond, then]] + [[n, other] for n in negs]
                    f.groups.append(("if", f"{ptr}/if", alternatives))
        deps = {}
        if "dependencies" in node:
            if not isinstance(node["dependencies"], dict):
                raise SchemaError("dependencies must be an object", f"{ptr}/dependencies")
            deps.update({k: ("dependencies", v) for k, v in node["dependencies"].items()})
        for kw in ("dependentRequired", "dependentSchemas"):
            if kw in node:
                if not isinstance(node[kw], dict):
                    raise SchemaError(f"{kw} must be an object", f"{ptr}/{kw}")
                deps.update({k: (kw, v) for k, v in node[kw].items()})
        for name, (kw, dep) in deps.items():
            absent = Loc({"$gm_forbid": [name]}, f"{ptr}/{kw}", loc.base, check=True)
            if isinstance(dep, list):
                present = Loc({"required": [name, *dep]}, f"{ptr}/{kw}", loc.base)
                f.groups.append((kw, f"{ptr}/{kw}", [[absent], [present]]))
            else:
                present = Loc({"required": [name]}, f"{ptr}/{kw}", loc.base)
                f.groups.append((kw, f"{ptr}/{kw}", [[absent], [present, loc.child(kw, name)]]))
        if "$gm_forbid" in node:
            f.forbid.update(node["$gm_forbid"])
        if "$gm_not_values" in node:
            f.not_values.extend(node["$gm_not_values"])
        if "$gm_not_pattern" in node:
            f.not_patterns.append((node["$gm_not_pattern"], ptr))
        for kw in ("divisibleBy", "disallow", "extends"):
            if kw in keys:
                self.refuse(kw, f"{ptr}/{kw}", "draft-3 keyword")

    def _restrict_enum(self, f: _Facts, vals: list) -> None:
        if f.enum is None:
            f.enum = list(vals)
        else:
            f.enum = [v for v in f.enum if any(_json_equal(v, w) for w in vals)]

    def _absorb_numeric(self, f: _Facts, node: dict, ptr: str) -> None:
        def number(kw):
            v = node[kw]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SchemaError(f"{kw} must be a number", f"{ptr}/{kw}")
            return v

        if "minimum" in node:
            strict = node.get("exclusiveMinimum") is True
            f.lower.append((number("minimum"), strict))
        if "maximum" in node:
            strict = node.get("exclusiveMaximum") is True
            f.upper.append((number("maximum"), strict))
        for kw, bounds in (("exclusiveMinimum", f.lower), ("exclusiveMaximum", f.upper)):
            if kw not in node:
                continue
            if not isinstance(node[kw], bool):
                bounds.append((number(kw), True))
            elif not self.draft4:
                # Outside draft 4 a boolean here is a number to the validator (True == 1,
                # False == 0): enforce that bound too, so both readings hold.
                bounds.append((int(node[kw]), True))
        if "multipleOf" in node:
            v = number("multipleOf")
            if v <= 0:
                raise SchemaError("multipleOf must be positive", f"{ptr}/multipleOf")
            f.multiple.append((v, f"{ptr}/multipleOf"))

    def _absorb_string(self, f: _Facts, node: dict, ptr: str) -> None:
        for kw in ("minLength", "maxLength"):
            if kw in node:
                v = node[kw]
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise SchemaError(f"{kw} must be a non-negative integer", f"{ptr}/{kw}")
                if kw == "minLength":
                    f.min_len = max(f.min_len, v)
                else:
                    f.max_len = v if f.max_len is None else min(f.max_len, v)
        if "pattern" in node:
            p = node["pattern"]
            if not isinstance(p, str):
                raise SchemaError("pattern must be a string", f"{ptr}/pattern")
            try:
                re.compile(p)
            except re.error as e:
                raise SchemaError(f"pattern does not compile: {e}", f"{ptr}/pattern") from None
            f.patterns.append((p, f"{ptr}/pattern"))
        if "format" in node:
            name = node["format"]
            if isinstance(name, str):
                if format_expr(name) is not None:
                    f.formats.append((name, f"{ptr}/format"))
                elif name in CHECKED_ELSEWHERE:
                    self.refuse("format", f"{ptr}/format", f"format {name!r} has no grammar")

    def _count(self, node, kw, ptr) -> int:
        v = node[kw]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SchemaError(f"{kw} must be a non-negative integer", f"{ptr}/{kw}")
        return v

    def _absorb_array(self, f: _Facts, loc: Loc, node: dict, ptr: str) -> None:
        prefix: list[Loc] = []
        rest: Loc | None = None
        if "prefixItems" in node:
            if not isinstance(node["prefixItems"], list):
                raise SchemaError("prefixItems must be an array", f"{ptr}/prefixItems")
            prefix = [loc.child("prefixItems", i) for i in range(len(node["prefixItems"]))]
            if "items" in node:
                rest = loc.child("items")
        elif isinstance(node.get("items"), list):
            prefix = [loc.child("items", i) for i in range(len(node["items"]))]
            if "additionalItems" in node:
                rest = loc.child("additionalItems")
        elif "items" in node:
            rest = loc.child("items")
        if prefix or rest is not None:
            f.arr.append(_ArrConj(prefix, rest))
        if "minItems" in node:
            f.min_items = max(f.min_items, self._count(node, "minItems", ptr))
        if "maxItems" in node:
            v = self._count(node, "maxItems", ptr)
            f.max_items = v if f.max_items is None else min(f.max_items, v)
        if "contains" in node:
            lo = self._count(node, "minContains", ptr) if "minContains" in node else 1
            hi = self._count(node, "maxContains", ptr) if "maxContains" in node else None
            f.contains.append((loc.child("contains"), lo, hi, f"{ptr}/contains"))
        if node.get("uniqueItems") is True:
            f.unique = f"{ptr}/uniqueItems"
        if "unevaluatedItems" in node:
            f.unevaluated_items.append(loc.child("unevaluatedItems"))

    def _absorb_object(self, f: _Facts, loc: Loc, node: dict, ptr: str) -> None:
        props: dict[str, Loc] = {}
        if "properties" in node:
            if not isinstance(node["properties"], dict):
                raise SchemaError("properties must be an object", f"{ptr}/properties")
            props = {k: loc.child("properties", k) for k in node["properties"]}
        patterns: list[tuple[str, Loc]] = []
        if "patternProperties" in node:
            pp = node["patternProperties"]
            if not isinstance(pp, dict):
                raise SchemaError("patternProperties must be an object", f"{ptr}/patternProperties")
            for p in pp:
                try:
                    re.compile(p)
                except re.error as e:
                    raise SchemaError(f"pattern does not compile: {e}", f"{ptr}/patternProperties") from None
                patterns.append((p, loc.child("patternProperties", p)))
        additional = loc.child("additionalProperties") if "additionalProperties" in node else None
        if props or patterns or additional is not None:
            f.obj.append(_ObjConj(props, patterns, additional))
        if "required" in node:
            req = node["required"]
            if isinstance(req, bool):  # draft 3: required inside a property; ignorable here
                if req:
                    self.refuse("required", f"{ptr}/required", "draft-3 boolean required")
            elif not isinstance(req, list) or not all(isinstance(r, str) for r in req):
                raise SchemaError("required must be an array of strings", f"{ptr}/required")
            else:
                for r in req:
                    if r not in f.required:
                        f.required.append(r)
        if "minProperties" in node:
            f.min_props = max(f.min_props, self._count(node, "minProperties", ptr))
        if "maxProperties" in node:
            v = self._count(node, "maxProperties", ptr)
            f.max_props = v if f.max_props is None else min(f.max_props, v)
        if "propertyNames" in node:
            f.prop_names.append(loc.child("propertyNames"))
        if "unevaluatedProperties" in node:
            f.unevaluated_props.append(loc.child("unevaluatedProperties"))

    # ------------------------------------------------------------------ negation

    def _neg_refuse(self, ptr: str, detail: str) -> None:
        if self._neg_quiet:
            raise _NoNegation()
        self.refuse("not", ptr, detail)

    def negate(self, loc: Loc, stack: tuple) -> list[Loc] | None:
        """Schemas whose union is exactly the values ``loc`` rejects; None when refused."""
        node = loc.node
        check = {"not": loc.validation_schema}
        if node is True:
            return []
        if node is False:
            return [Loc(True, loc.ptr, loc.base)]
        if not isinstance(node, dict):
            raise SchemaError("a schema must be an object or a boolean", loc.ptr)
        if id(node) in stack:
            self._neg_refuse(loc.ptr, "negation of a recursive schema")
            return None
        stack = stack + (id(node),)

        def syn(d: dict) -> Loc:
            return Loc(d, loc.ptr, loc.base, check=check)

        out: list[Loc] = []
        for kw, v in node.items():
            if kw in _ANNOTATIONS or kw in _COMPANIONS and kw != "additionalItems":
                continue
            if kw == "$ref":
                sub = self.negate(self.index.resolve(v, loc), stack)
                if sub is None:
                    return None
                out += sub
            elif kw == "type":
                ts = {v} if isinstance(v, str) else set(v)
                if "number" in ts:
                    ts.add("integer")
                rest = [t for t in ALL_TYPES if t not in ts and not (t == "number" and "integer" in ts)]
                if rest:
                    out.append(syn({"type": rest}))
            elif kw == "enum":
                out.append(syn({"$gm_not_values": list(v)}))
            elif kw == "const":
                out.append(syn({"$gm_not_values": [v]}))
            elif kw == "required":
                out += [syn({"type": "object", "$gm_forbid": [r]}) for r in v]
            elif kw == "properties":
                for k in v:
                    sub = self.negate(loc.child("properties", k), stack)
                    if sub is None:  # refused (and reported) below
                        return None
                    # an empty list: the property's schema accepts every value
                    out += [syn({"type": "object", "required": [k], "properties": {k: n}})
                            for n in sub]
            elif kw in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
                kind = {"L": "string", "I": "array", "P": "object"}[kw[3]]
                other = ("max" if kw.startswith("min") else "min") + kw[3:]
                if kw.startswith("min"):
                    if v > 0:
                        out.append(syn({"type": kind, other: v - 1}))
                else:
                    out.append(syn({"type": kind, other: v + 1}))
            elif kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(v, bool):
                    continue
                low = kw in ("minimum", "exclusiveMinimum")
                strict = kw.startswith("exclusive") or (
                    node.get("exclusiveMinimum" if low else "exclusiveMaximum") is True
                )
                flip = ("exclusiveMaximum" if not strict else "maximum") if low else (
                    "exclusiveMinimum" if not strict else "minimum"
                )
                out.append(syn({"type": "number", flip: v}))
            elif kw == "pattern":
                out.append(syn({"type": "string", "$gm_not_pattern": v}))
            elif kw == "anyOf":
                parts = []
                for i in range(len(v)):
                    n = self.negate(loc.child("anyOf", i), stack)
                    if n is None:
                        return None
                    parts.append(n)
                out.append(syn({"allOf": [Loc({"anyOf": p}, loc.ptr, loc.base, check=check) if p else Loc(False, loc.ptr, loc.base) for p in parts]}))
            elif kw == "allOf":
                for i in range(len(v)):
                    n = self.negate(loc.child("allOf", i), stack)
                    if n is None:
                        return None
                    out += n
            elif kw == "not":
                out.append(loc.child("not"))
            else:
                self._neg_refuse(f"{loc.ptr}/{kw}", f"negation of {kw!r}")
                return None
        return out

    # ------------------------------------------------------------------ emission

    def emit(self, f: _Facts, depth: int, ptr: str) -> Expr:
        count = [0]
        return self._expand(f, depth, ptr, count)

    def _expand(self, f: _Facts, depth: int, ptr: str, count: list) -> Expr:
        if f.false:
            return NOTHING
        if not f.groups:
            count[0] += 1
            if count[0] > MAX_ALTERNATIVES:
                raise UnsupportedSchemaError("anyOf", ptr, f"more than {MAX_ALTERNATIVES} combinations of alternatives")
            return self.emit_plain(f, depth, ptr)
        kind, gptr, alternatives = f.groups[0]
        base = f.copy()
        base.groups = base.groups[1:]
        branches = []
        for alt_locs in alternatives:
            g = base.copy()
            for loc in alt_locs:
                self.absorb(g, loc)
            if self._hopeless(g):
                continue
            branches.append(g)
        if kind == "oneOf" and len(branches) > 1:
            overlap = next(
                ((i, j) for i in range(len(branches)) for j in range(i + 1, len(branches))
                 if not self._disjoint(branches[i], branches[j])),
                None,
            )
            if overlap is not None:
                exact = self._one_of_by_negation(base, alternatives)
                if exact is None:
                    self.refuse("oneOf", gptr, f"alternatives {overlap[0]} and {overlap[1]} may overlap")
                else:
                    branches = exact
        return alt([self._expand(g, depth, ptr, count) for g in branches])

    def _one_of_by_negation(self, base: _Facts, alternatives: list[list[Loc]]) -> list[_Facts] | None:
        """oneOf as anyOf over "branch i and no other branch": exact when every branch can be
        negated; None otherwise."""
        negations = []
        self._neg_quiet = True
        try:
            for alt_locs in alternatives:
                if len(alt_locs) != 1:
                    return None
                negations.append(self.negate(alt_locs[0], ()))
        except _NoNegation:
            return None
        finally:
            self._neg_quiet = False
        out = []
        for i, alt_locs in enumerate(alternatives):
            g = base.copy()
            for loc in alt_locs:
                self.absorb(g, loc)
            for j, neg in enumerate(negations):
                if j == i:
                    continue
                if not neg:
                    g.false = True
                    break
                g.groups.append(("not", alt_locs[0].ptr, [[n] for n in neg]))
            if not self._hopeless(g):
                out.append(g)
        return out

    def _hopeless(self, f: _Facts) -> bool:
        return f.false or (f.types is not None and not f.types) or (f.enum is not None and not f.enum)

    def _types(self, f: _Facts) -> set[str]:
        types = set(ALL_TYPES) if f.types is None else set(f.types)
        if "integer" in types and "number" not in types and f.types is not None:
            pass
        if f.enum is not None:
            types &= {_type_of(v) for v in f.enum} | ({"number"} if any(_type_of(v) == "integer" for v in f.enum) else set())
        return types

    def _disjoint(self, a: _Facts, b: _Facts) -> bool:
        ta, tb = self._types(a), self._types(b)
        common = ta & tb
        if "number" in ta and "integer" in tb or "integer" in ta and "number" in tb:
            common |= {"integer"} & (ta | tb)
        if not common:
            return True
        if a.enum is not None:
            return not any(all(self.is_valid(v, s) for s in b.sources) for v in a.enum)
        if b.enum is not None:
            return not any(all(self.is_valid(v, s) for s in a.sources) for v in b.enum)
        for t in common:
            if t in ("object",) and self._objects_disjoint(a, b):
                continue
            if t in ("integer", "number") and self._ranges_disjoint(a, b):
                continue
            if t == "null" or t == "boolean":
                return False
            return False
        return True

    def _ranges_disjoint(self, a: _Facts, b: _Facts) -> bool:
        def interval(f):
            lo = max((Fraction(v) for v, _ in f.lower if not (isinstance(v, float) and math.isinf(v))), default=None)
            hi = min((Fraction(v) for v, _ in f.upper if not (isinstance(v, float) and math.isinf(v))), default=None)
            los = any(s for v, s in f.lower if lo is not None and Fraction(v) == lo)
            his = any(s for v, s in f.upper if hi is not None and Fraction(v) == hi)
            return lo, los, hi, his

        alo, alos, ahi, ahis = interval(a)
        blo, blos, bhi, bhis = interval(b)
        if ahi is not None and blo is not None and (ahi < blo or (ahi == blo and (ahis or blos))):
            return True
        return bhi is not None and alo is not None and (bhi < alo or (bhi == alo and (bhis or alos)))

    def _objects_disjoint(self, a: _Facts, b: _Facts) -> bool:
        if set(a.required) & b.forbid or set(b.required) & a.forbid:
            return True
        for k in set(a.required) & set(b.required):
            va = [l for c in a.obj for l in c.value_locs(k)]
            vb = [l for c in b.obj for l in c.value_locs(k)]
            fa, fb = _Facts(), _Facts()
            for l in va:
                self.absorb(fa, self.deref(l))
            for l in vb:
                self.absorb(fb, self.deref(l))
            if fa.groups or fb.groups:
                continue
            if self._disjoint(fa, fb):
                return True
        return False

    def emit_plain(self, f: _Facts, depth: int, ptr: str) -> Expr:
        """A fact set without pending alternatives."""
        types = self._types(f)
        if f.enum is not None:
            vals = []
            for v in f.enum:
                if any(_json_equal(v, w) for w in f.not_values):
                    continue
                if all(self.is_valid(v, s) for s in f.sources):
                    vals.append(v)
            return alt([self.const_expr(v, depth) for v in vals])
        parts = []
        if "null" in types and not any(w is None for w in f.not_values):
            parts.append(lit("null"))
        if "boolean" in types:
            for b in (True, False):
                if not any(w is b for w in f.not_values):
                    parts.append(lit("true" if b else "false"))
        if "number" in types:
            parts.append(self.emit_number(f, integer=False))
        elif "integer" in types:
            parts.append(self.emit_number(f, integer=True))
        if "string" in types:
            parts.append(self.emit_string(f, ptr))
        if "array" in types:
            parts.append(self.emit_array(f, depth, ptr))
        if "object" in types:
            parts.append(self.emit_object(f, depth, ptr))
        return alt(parts)

    # ------------------------------------------------------------------ constants

    def const_expr(self, v, depth: int) -> Expr:
        L = self.layout
        if v is None or isinstance(v, (bool, int, float, str)):
            if isinstance(v, float) and not math.isfinite(v):
                return NOTHING
            if isinstance(v, str):
                return lit(b'"' + encode_text(v) + b'"')
            if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                return alt(lit(json.dumps(v)), lit(str(int(v))))
            return lit(json.dumps(v))
        if isinstance(v, list):
            if not v:
                return seq(lit("["), L.last(depth, False), lit("]"))
            items = [self.const_expr(x, depth + 1) for x in v]
            body = [L.first(depth), items[0]]
            for x in items[1:]:
                body += [L.between(depth), x]
            return seq(lit("["), *body, L.last(depth, True), lit("]"))
        if isinstance(v, dict):
            if not v:
                return seq(lit("{"), L.last(depth, False), lit("}"))
            body = []
            for i, (k, x) in enumerate(v.items()):
                body.append(L.first(depth) if i == 0 else L.between(depth))
                body += [lit(b'"' + encode_text(k) + b'"'), L.key_sep(), self.const_expr(x, depth + 1)]
            return seq(lit("{"), *body, L.last(depth, True), lit("}"))
        raise SchemaError(f"not a JSON value: {v!r}")

    # ------------------------------------------------------------------ numbers

    def emit_number(self, f: _Facts, integer: bool) -> Expr:
        lower = [(v, s) for v, s in f.lower]
        upper = [(v, s) for v, s in f.upper]
        modulus = 1
        limit = None
        applied = False  # some multipleOf is enforced: the value is then an integer
        for m, mptr in f.multiple:
            if isinstance(m, int):
                k = m
            else:
                got = num.float_multiple_as_integer_divisor(m)
                if got is None:
                    self.refuse("multipleOf", mptr, f"{m!r} is not exactly representable for the validator")
                    continue
                k, lim = got
                if lim is not None:
                    limit = lim if limit is None else min(limit, lim)
            modulus = modulus * k // math.gcd(modulus, k)
            applied = True
        # the multiples written: integers (multipleOf 1 on a number too: 100.1 is no multiple
        # of 1); a number may also spell an integer value with a zero fraction, "100.0"; a
        # number with one decimal multipleOf (0.01) also its multiples exact in binary (8.25)
        zero_fraction = applied and not integer
        step = None
        if zero_fraction and len(f.multiple) == 1 and isinstance(f.multiple[0][0], float):
            step = num.float_multiple_as_decimal_step(f.multiple[0][0])
        # not-values split the ranges
        excluded = sorted({Fraction(w) for w in f.not_values if isinstance(w, (int, float))
                           and not isinstance(w, bool) and math.isfinite(w)})
        if step is not None:
            return self._decimal_multiples(f, lower, upper, excluded, step)
        if applied:
            integer = True
        if limit is not None:
            lower.append((-limit, False))
            upper.append((limit, False))
        pieces = self._split_ranges(lower, upper, excluded)
        out = []
        for lo, hi in pieces:
            piece = self._number_piece(lo, hi, integer, modulus, f)
            if zero_fraction:
                piece = seq(piece, rep(seq(lit("."), rep(lit("0"), 1, None)), 0, 1))
            out.append(piece)
        return alt(out)

    def _decimal_multiples(self, f: _Facts, lower, upper, excluded, step) -> Expr:
        """Numbers of a decimal multipleOf: the multiples exact in binary (see
        json_numbers.float_multiple_as_decimal_step), within the bounds and the limit."""
        k, a, limit = step
        lower = lower + [(-limit, True)]
        upper = upper + [(limit, True)]
        auto = num.decimal_multiple_automaton(k, a)
        out = []
        for lo, hi in self._split_ranges(lower, upper, excluded):
            piece = self._number_piece(lo, hi, False, 1, f)
            out.append(self.intersect_bytes([piece, auto], "multipleOf", f.multiple[0][1]))
        return alt(out)

    @staticmethod
    def _split_ranges(lower, upper, excluded):
        """[(lower bounds, upper bounds)] whose union is the range minus the excluded points."""
        pieces = [(list(lower), list(upper))]
        for x in excluded:
            new = []
            for lo, hi in pieces:
                new.append((lo, hi + [(x, True)]))
                new.append((lo + [(x, True)], hi))
            pieces = new
        return pieces

    def _number_piece(self, lower, upper, integer, modulus, f) -> Expr:
        def pick(bounds, up):
            # tightest bound, as (value, strict); Fractions compare exactly
            best = None
            for v, s in bounds:
                if isinstance(v, float) and math.isinf(v):
                    if (v > 0) == up:
                        return ("empty",)
                    continue
                fv = Fraction(v)
                if best is None:
                    best = (v, s, fv)
                    continue
                if ((fv > best[2]) if up else (fv < best[2])) or fv == best[2] and s:
                    best = (v, s, fv)
            return best

        lo = pick(lower, True)
        hi = pick(upper, False)
        if lo == ("empty",) or hi == ("empty",):
            return NOTHING

        def as_num(v):
            return float(v) if isinstance(v, Fraction) and v.denominator != 1 else (int(v) if isinstance(v, Fraction) else v)

        mn = as_num(lo[0]) if lo and not lo[1] else None
        xmn = as_num(lo[0]) if lo and lo[1] else None
        mx = as_num(hi[0]) if hi and not hi[1] else None
        xmx = as_num(hi[0]) if hi and hi[1] else None
        if integer:
            ilo, ihi = num.integer_bounds(mn, mx, xmn, xmx)
            if modulus > 1:
                mptr = f.multiple[0][1] if f.multiple else "#"
                try:
                    auto = num.multiple_automaton(modulus)
                except ValueError:
                    self.refuse("multipleOf", mptr, f"modulus {modulus} too large")
                    return num.integer_range(ilo, ihi)
                if ilo is None and ihi is None:
                    return auto
                return self.intersect_bytes([num.integer_range(ilo, ihi), auto], "multipleOf",
                                            mptr)
            if ilo is None and ihi is None:
                return num.INTEGER
            return num.integer_range(ilo, ihi)
        if lo is None and hi is None:
            return num.NUMBER
        if lo is not None and hi is None and not lo[1] and lo[2] == 0:
            return alt(num.nonnegative_number(False), lit("-0"))
        return num.number_range(mn, mx, xmn, xmx)

    def intersect_bytes(self, exprs: list[Expr], keyword: str, ptr: str = "#") -> Expr:
        """Intersection of regular byte languages through the DFA toolkit."""
        try:
            from .fsm import Dfa
        except ImportError:
            raise UnsupportedSchemaError(keyword, ptr, "needs the DFA toolkit (grammask.grammar.fsm)") from None
        dfa = None
        for e in exprs:
            self.check_budget(ptr)
            d = Dfa.from_expr(e)
            if dfa is not None and dfa.n_states * d.n_states > MAX_PRODUCT:
                raise UnsupportedSchemaError(keyword, ptr, f"automaton product exceeds {MAX_PRODUCT} states")
            dfa = d if dfa is None else dfa.intersect(d)
            dfa = dfa.minimize()
            if dfa.n_states > MAX_DFA_STATES:
                raise UnsupportedSchemaError(keyword, ptr, f"automaton exceeds {MAX_DFA_STATES} states")
        if dfa.is_empty():
            return NOTHING
        return dfa.to_expr(keyword)

    # ------------------------------------------------------------------ strings

    def decoded_language(self, f: _Facts, ptr: str) -> list[Expr]:
        """Decoded-text languages of the pattern/format/not-value constraints."""
        langs = []
        for p, pptr in f.patterns:
            langs.append(self.pattern_expr(p, pptr))
        for name, fptr in f.formats:
            langs.append(format_expr(name))
        strings = [w for w in f.not_values if isinstance(w, str)]
        if strings:
            langs.append(_not_in_set(strings))
        for p, pptr in f.not_patterns:
            e = self.pattern_expr(p, pptr)
            try:
                from .fsm import Dfa
            except ImportError:
                self.refuse("not", pptr, "needs the DFA toolkit (grammask.grammar.fsm)")
                continue
            d = Dfa.from_expr(e).complement().intersect(Dfa.from_expr(star(any_char())))
            langs.append(d.minimize().to_expr("not pattern"))
        return langs

    def pattern_expr(self, p: str, ptr: str) -> Expr:
        try:
            from .regex import regex_to_expr
        except ImportError:
            raise UnsupportedSchemaError("pattern", ptr, "regex front-end not available") from None
        try:
            return regex_to_expr(p, semantics="search")
        except GrammarError as e:
            raise UnsupportedSchemaError("pattern", ptr, str(e)) from None

    def emit_string(self, f: _Facts, ptr: str) -> Expr:
        lo, hi = f.min_len, f.max_len
        if hi is not None and hi < lo:
            return NOTHING
        try:
            langs = self.decoded_language(f, ptr)
        except UnsupportedSchemaError as e:
            if not self.lenient:
                raise
            warnings.warn(str(e), stacklevel=2)
            langs = []
        if not langs:
            return quoted(rep(self.json_char_ref(), lo, hi))
        keyword = "pattern" if f.patterns else ("format" if f.formats else "not")
        if len(langs) > 1:
            lang = self.intersect_bytes(langs, keyword, ptr)
        else:
            lang = langs[0]
        if lo > 0 or hi is not None:
            lang = self.limit_length(lang, lo, hi, keyword, ptr)
        return quoted(encode_text_expr(lang))

    def limit_length(self, lang: Expr, lo: int, hi: int | None, keyword: str, ptr: str) -> Expr:
        """``lang`` (decoded text) restricted to lengths in [lo, hi].

        Exact (automaton product) when the product is small. Otherwise the unbounded
        repetitions inside ``lang`` are capped so its longest string fits: a subset.
        """
        mn, mx = _length_bounds(lang)
        if mn is not None and mn >= lo and (hi is None or (mx is not None and mx <= hi)):
            return lang
        try:
            from .fsm import Dfa
        except ImportError:
            raise UnsupportedSchemaError(keyword, ptr, "needs the DFA toolkit") from None
        size = Dfa.from_expr(lang).n_states
        if size * ((hi if hi is not None else lo) + 1) <= MAX_PRODUCT // 4:
            return self.intersect_bytes([lang, rep(any_char(), lo, hi)], keyword, ptr)
        if hi is not None:
            capped = _cap_repeats(lang, hi)
            if capped is not None:
                if lo > 0:
                    return self.intersect_bytes([capped, rep(any_char(), lo, None)], keyword, ptr)
                return capped
        raise UnsupportedSchemaError("maxLength" if hi is not None else "minLength", ptr,
                                     f"length limits with {keyword} give too large an automaton")

    # ------------------------------------------------------------------ arrays

    def emit_array(self, f: _Facts, depth: int, ptr: str) -> Expr:
        L = self.layout
        lo, hi = f.min_items, f.max_items
        if hi is not None and hi < lo:
            return NOTHING
        conjs = f.arr
        n_prefix = max((len(c.prefix) for c in conjs), default=0)

        unevaluated = list(f.unevaluated_items)
        if self.strict and not unevaluated and n_prefix and all(c.rest is None for c in conjs):
            unevaluated = [Loc(False, ptr, "")]  # strict mode: no items beyond the prefix

        def locs_at(i):
            out = [c.at(i) for c in conjs]
            out = [l for l in out if l is not None]
            if not out and unevaluated:
                out = list(unevaluated)
            return out or [Loc(True, ptr, "")]

        if hi is not None:
            n_prefix = min(n_prefix, hi)
        elems = [self.value(locs_at(i), depth + 1) for i in range(n_prefix)]
        rest_locs = locs_at(n_prefix)
        rest = self.value(rest_locs, depth + 1)
        if self._is_false(rest_locs):
            rest = NOTHING
        if f.contains:
            return self._array_contains(f, elems, rest, rest_locs, depth, ptr)
        if f.unique:
            special = self._unique_array(f, elems, rest_locs, depth, ptr)
            if special is not None:
                return special
        rest_lo = max(0, lo - n_prefix)
        rest_hi = None if hi is None else hi - n_prefix
        # the tail after the prefix: rest items, each preceded by a separator
        tail = rep(seq(L.between(depth), rest), rest_lo, rest_hi) if not isinstance(rest, Nothing) else (
            EMPTY if rest_lo == 0 else NOTHING
        )
        if n_prefix == 0:
            if isinstance(rest, Nothing) or rest_hi == 0:
                body = NOTHING
            else:
                first_lo = max(rest_lo - 1, 0)
                first_hi = None if rest_hi is None else rest_hi - 1
                body = seq(L.first(depth), rest, rep(seq(L.between(depth), rest), first_lo, first_hi))
            nonempty = body
            allow_empty = lo == 0
        else:
            # after(i): what follows prefix items 0..i-1; the array may end before item i
            # once i >= minItems
            after = tail
            for i in range(n_prefix - 1, 0, -1):
                item = seq(L.between(depth), elems[i], after)
                after = alt(item, EMPTY) if i >= lo else item
            nonempty = seq(L.first(depth), elems[0], after)
            allow_empty = lo == 0
        parts = [seq(lit("["), nonempty, L.last(depth, True), lit("]"))]
        if allow_empty:
            parts.append(seq(lit("["), L.last(depth, False), lit("]")))
        return alt(parts)

    def _is_false(self, locs: list[Loc]) -> bool:
        return any(l.node is False for l in locs)

    def _array_contains(self, f, elems, rest, rest_locs, depth, ptr) -> Expr:
        L = self.layout
        if len(f.contains) > 1 or elems or f.unique:
            self.refuse("contains", f.contains[0][3], "contains with prefixItems, uniqueItems or several contains")
            f2 = f.copy()
            f2.contains = []
            return self.emit_array(f2, depth, ptr)
        cloc, cmin, cmax, cptr = f.contains[0]
        if cmax is not None:
            self.refuse("maxContains", cptr, "maxContains needs the negation of contains")
        if f.min_items > cmin or f.max_items is not None:
            self.refuse("contains", cptr, "contains combined with minItems/maxItems")
        hit = self.value(rest_locs + [cloc], depth + 1)
        if cmin == 0:
            f2 = f.copy()
            f2.contains = []
            return self.emit_array(f2, depth, ptr)
        # I* (C I*){cmin}: every array with at least cmin items that satisfy contains
        anyi = seq(L.between(depth), rest)
        tail = seq(star(anyi), rep(seq(L.between(depth), hit, star(anyi)), cmin - 1, None))
        body = alt(
            seq(L.first(depth), hit, tail),
            seq(L.first(depth), rest, star(anyi), L.between(depth), hit, tail),
        )
        return seq(lit("["), body, L.last(depth, True), lit("]"))

    def _unique_array(self, f, elems, rest_locs, depth, ptr) -> Expr | None:
        L = self.layout
        if f.max_items is not None and f.max_items <= 1:
            return None  # one item is always unique: the plain construction is exact
        if elems:
            self.refuse("uniqueItems", f.unique, "uniqueItems with prefixItems")
            return None
        # finite item domain: values in schema order, each at most once
        fi = _Facts()
        for l in rest_locs:
            self.absorb(fi, self.deref(l))
        domain = None
        if not fi.groups and fi.enum is not None:
            domain = [v for v in fi.enum if all(self.is_valid(v, s) for s in fi.sources)]
        elif not fi.groups and fi.types is not None and fi.types <= {"boolean", "null"}:
            domain = ([None] if "null" in fi.types else []) + ([True, False] if "boolean" in fi.types else [])
            domain = [v for v in domain if all(self.is_valid(v, s) for s in fi.sources)]
        if domain is None:
            self.refuse("uniqueItems", f.unique, "items are not from a small finite set")
            return None
        uniq = []
        for v in domain:
            if not any(_json_equal(v, w) for w in uniq):
                uniq.append(v)
        lo, hi = f.min_items, f.max_items if f.max_items is not None else len(uniq)
        hi = min(hi, len(uniq))
        if lo > hi:
            return NOTHING
        if len(uniq) * (hi + 1) > MAX_OBJECT_STATES:
            self.refuse("uniqueItems", f.unique, "too many distinct item values")
            return None
        consts = [self.const_expr(v, depth + 1) for v in uniq]
        memo: dict = {}

        def chain(i: int, c: int) -> Expr:
            # items from uniq[i:], c already emitted
            key = (i, c)
            if key in memo:
                return memo[key]
            if i == len(uniq) or c == hi:
                out = EMPTY if c >= lo else NOTHING
            else:
                sep = L.first(depth) if c == 0 else L.between(depth)
                out = alt(seq(sep, consts[i], chain(i + 1, c + 1)), chain(i + 1, c))
            memo[key] = out
            return out

        body = chain(0, 0)
        parts = []
        nonempty_body = alt([seq(L.first(depth), consts[i], chain(i + 1, 1)) for i in range(len(uniq))]) if hi >= 1 else NOTHING
        parts.append(seq(lit("["), nonempty_body, L.last(depth, True), lit("]")))
        if lo == 0:
            parts.append(seq(lit("["), L.last(depth, False), lit("]")))
        del body
        return alt(parts)

    # ------------------------------------------------------------------ objects

    def emit_object(self, f: _Facts, depth: int, ptr: str) -> Expr:
        L = self.layout
        conjs = list(f.obj)
        unevaluated = list(f.unevaluated_props)
        if self.strict and not unevaluated and any(c.props or c.patterns for c in conjs) and not any(
            c.additional is not None for c in conjs
        ):
            unevaluated = [Loc(False, ptr, "")]
        # declared names, in schema order, then required names no conjunct declares
        names: list[str] = []
        for c in conjs:
            for k in c.props:
                if k not in names:
                    names.append(k)
        for r in f.required:
            if r not in names:
                names.append(r)
        required = set(f.required)
        entries = []  # (name, value expr, required)
        for k in names:
            if k in f.forbid:
                if k in required:
                    return NOTHING
                continue
            if f.prop_names and not all(self.is_valid(k, pn) for pn in f.prop_names):
                if k in required:
                    return NOTHING
                continue
            locs = [l for c in conjs for l in c.value_locs(k)]
            if not any(c.evaluates(k) for c in conjs) and unevaluated:
                locs += unevaluated
            if self._is_false(locs):
                if k in required:
                    return NOTHING
                continue
            value = self.value(locs or [Loc(True, ptr, "")], depth + 1)
            key = lit(b'"' + encode_text(k) + b'"')
            entries.append((k, seq(key, L.key_sep(), value), k in required))
        extras = self._extra_properties(f, conjs, unevaluated, [e[0] for e in entries] + list(f.forbid) + names, depth, ptr)
        min_p, max_p = f.min_props, f.max_props
        if max_p is not None and max_p < min_p:
            return NOTHING
        n_required = sum(1 for e in entries if e[2])
        if max_p is not None and n_required > max_p:
            return NOTHING
        # counting states: c in [0, cap]; beyond cap the count no longer matters
        cap = max(min_p, 1) if max_p is None else max_p
        if (len(entries) + 1) * (cap + 1) > MAX_OBJECT_STATES:
            raise UnsupportedSchemaError("maxProperties" if max_p is not None else "minProperties", ptr, "too many property/count combinations")
        memo: dict = {}
        obj_name = None

        def state(i: int, c: int) -> Expr:
            key = (i, c)
            if key in memo:
                return memo[key]
            sep = L.first(depth) if c == 0 else L.between(depth)
            nc = min(c + 1, cap) if max_p is None else c + 1
            if i == len(entries):
                out_parts = []
                if c >= min_p:
                    out_parts.append(EMPTY)
                if extras is not None and (max_p is None or c < max_p):
                    if max_p is None and c == cap and c > 0:
                        out_parts = [star(seq(L.between(depth), extras))] if c >= min_p else [NOTHING]
                    else:
                        out_parts.append(seq(sep, extras, state(i, nc)))
                out = alt(out_parts)
                memo[key] = out
                return out
            _, kv, req = entries[i]
            if max_p is not None and c >= max_p:
                out = NOTHING if req else state(i + 1, c)
                memo[key] = out
                return out
            present = seq(sep, kv, state(i + 1, nc))
            if req:
                out = present
            else:
                nonlocal obj_name
                if obj_name is None:
                    obj_name = self.fresh_name(ptr + "/obj")
                rule = f"{obj_name}_{i}_{c}"
                memo[key] = Ref(rule)
                self.rules[rule] = NOTHING
                self.rules[rule] = alt(present, state(i + 1, c))
                return Ref(rule)
            memo[key] = out
            return out

        body = state(0, 0)
        state = None  # a recursive closure: kept, a reference cycle for the collector
        # empty object: only when nothing is required and min_p == 0
        parts = []
        if not isinstance(body, Nothing):
            # body may match the empty string (no properties): split that off to place padding
            parts.append(seq(lit("{"), body, L.last(depth, True), lit("}")))
        return self._fix_empty_object(parts, f, entries, min_p, depth)

    def _fix_empty_object(self, parts, f, entries, min_p, depth):
        L = self.layout
        # `{` body last `}` with an empty body gives "{" + last(nonempty=True) + "}", which
        # for indent layouts is "{\n}". json.dumps writes "{}": add it and, for indent
        # layouts, the padded empty form is harmless (never required). With any_whitespace
        # both are "{" ws "}".
        can_be_empty = min_p == 0 and not any(e[2] for e in entries)
        out = list(parts)
        if can_be_empty:
            out.append(seq(lit("{"), L.last(depth, False), lit("}")))
        return alt(out)

    def _extra_properties(self, f, conjs, unevaluated, taken, depth, ptr) -> Expr | None:
        """Key-value alternatives for keys outside the declared names, or None."""
        all_patterns = [(p, c_i, loc) for c_i, c in enumerate(conjs) for p, loc in c.patterns]
        # no conjunct restricts extra keys and nothing declared: any key
        def extra_value_for(matched: set) -> list[Loc] | None:
            locs = []
            evaluated = False
            for c_i, c in enumerate(conjs):
                mine = [loc for p, ci, loc in all_patterns if ci == c_i and (p, ci) in matched]
                if mine:
                    locs += mine
                    evaluated = True
                elif c.additional is not None:
                    locs.append(c.additional)
                    evaluated = True
            if not evaluated and unevaluated:
                locs += unevaluated
            if self._is_false(locs):
                return None
            return locs

        if len(all_patterns) > MAX_PATTERN_KEYS:
            self.refuse("patternProperties", ptr, f"more than {MAX_PATTERN_KEYS} key patterns")
            all_patterns = all_patterns[:MAX_PATTERN_KEYS]
        exclude = sorted(set(taken))
        name_langs = []
        for pn in f.prop_names:
            lang = self.key_language(pn)
            if lang is None:
                return None
            name_langs.append(lang)
        alternatives = []
        m = len(all_patterns)
        for mask in range(1 << m):
            matched = {(all_patterns[j][0], all_patterns[j][1]) for j in range(m) if mask >> j & 1}
            locs = extra_value_for(matched)
            if locs is None:
                continue
            langs = []
            for j in range(m):
                p = self.pattern_expr(all_patterns[j][0], ptr + "/patternProperties")
                if mask >> j & 1:
                    langs.append(p)
                else:
                    langs.append(("not", p))
            key = self.key_expr(langs + name_langs, exclude, ptr)
            if isinstance(key, Nothing):
                continue
            value = self.value(locs or [Loc(True, ptr, "")], depth + 1)
            alternatives.append(seq(key, self.layout.key_sep(), value))
        if not alternatives:
            return None
        name = self.fresh_name(ptr + "/extra")
        self.rules[name] = alt(alternatives)
        return Ref(name)

    def key_language(self, loc: Loc):
        """Decoded-text language of a ``propertyNames`` schema (None: no key allowed)."""
        loc = self.deref(loc)
        f = _Facts()
        self.absorb(f, loc)
        if f.false:
            return None
        if f.groups:
            self.refuse("propertyNames", loc.ptr, "combinators in propertyNames")
            return star(any_char())
        if f.types is not None and "string" not in f.types:
            return None
        if f.enum is not None:
            # decoded text is Unicode scalar values: a name with a lone surrogate is left out
            # (like any other key holding one, see json_strings)
            vals = [v for v in f.enum if isinstance(v, str) and _is_scalar_text(v)
                    and all(self.is_valid(v, s) for s in f.sources)]
            return alt([lit(v) for v in vals])
        langs = self.decoded_language(f, loc.ptr)
        if f.min_len or f.max_len is not None:
            langs.append(rep(any_char(), f.min_len, f.max_len))
        if not langs:
            return star(any_char())
        if len(langs) == 1:
            return langs[0]
        return ("and", langs)

    def key_expr(self, langs, exclude: list[str], ptr: str) -> Expr:
        """JSON-encoded key (with quotes) in all the languages, outside ``exclude``."""
        plain = []
        negated = []
        for l in langs:
            if isinstance(l, tuple) and l[0] == "not":
                negated.append(l[1])
            elif isinstance(l, tuple) and l[0] == "and":
                plain += l[1]
            else:
                plain.append(l)
        # a language of any text (the pattern ".*") constrains nothing, and excludes everything
        # when negated: no automaton product for it
        if any(_is_any_text(e) for e in negated):
            return NOTHING
        plain = [e for e in plain if not _is_any_text(e)]
        if not plain and not negated:
            if not exclude:
                return quoted(star(self.json_char_ref()))
            key = tuple(exclude)
            name = self.key_rules.get(key)
            if name is None:
                name = self.fresh_name(ptr + "/other_keys")
                self.key_rules[key] = name
                self.rules[name] = keys_outside(exclude) or _not_in_set(
                    exclude, star(self.json_char_ref()), encoded=True)
            return quoted(Ref(name))
        if not negated and len(plain) == 1 and not exclude:
            return quoted(encode_text_expr(plain[0]))
        try:
            from .fsm import Dfa
        except ImportError:
            raise UnsupportedSchemaError("patternProperties", ptr, "needs the DFA toolkit (grammask.grammar.fsm)") from None
        anytext = Dfa.from_expr(star(any_char()))
        d = anytext
        for e in plain + ([_not_in_set(exclude)] if exclude else []):
            d = d.intersect(Dfa.from_expr(e)).minimize()
        for e in negated:
            d = d.intersect(Dfa.from_expr(e).complement()).minimize()
            if d.n_states > MAX_DFA_STATES:
                raise UnsupportedSchemaError("patternProperties", ptr, "key automaton too large")
        if d.is_empty():
            return NOTHING
        return quoted(encode_text_expr(d.to_expr("key")))


_ANY_TEXT: dict = {}


def _is_any_text(e: Expr) -> bool:
    """Whether the decoded-text language ``e`` is every string (memoized: patterns recur)."""
    hit = _ANY_TEXT.get(e)
    if hit is None:
        mn, mx = _length_bounds(e)
        if mn is not None and (mn > 0 or mx is not None):
            return False  # every string includes "" and strings of any length: not this one
        from .fsm import Dfa

        anytext = Dfa.from_expr(star(any_char()))
        hit = anytext.intersect(Dfa.from_expr(e).complement()).is_empty()
        if len(_ANY_TEXT) >= 4096:
            _ANY_TEXT.clear()
        _ANY_TEXT[e] = hit
    return hit


def _is_scalar_text(text: str) -> bool:
    """True unless ``text`` holds a surrogate code point (no UTF-8 form)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_in_set(words: list[str], tail: Expr | None = None, encoded: bool = False) -> Expr:
    """Strings not in ``words`` (a trie complement, linear in their total size).

    Decoded text by default; with ``encoded``, canonical JSON string contents whose decoded
    value is not in ``words``, where ``tail`` (any JSON characters) follows the first
    character that leaves the trie. The converter uses :func:`json_strings.keys_outside`
    for object keys (the same language as one byte automaton, built and compiled several
    times faster) and this form when a word has a character JSON escapes.
    """
    if not encoded:
        # decoded text never holds a lone surrogate: such a word excludes nothing
        words = [w for w in words if _is_scalar_text(w)]
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[None] = True
    rest = tail if tail is not None else star(any_char())
    if encoded:
        from .json_strings import _encode_charset
    # a key's characters come again and again (one node per character of every word):
    # their literals and "any other character, then the rest" are built once here
    ones: dict[str, Expr] = {}
    deviations: dict[tuple, Expr] = {}

    def one(ch: str) -> Expr:
        e = ones.get(ch)
        if e is None:
            e = ones[ch] = lit(encode_text(ch)) if encoded else lit(ch)
        return e

    def deviation(codes: tuple) -> Expr:
        e = deviations.get(codes)
        if e is None:
            # surrogates are no characters (char_ranges drops them on the decoded side)
            others = subtract_ranges(tuple(_complement_points(codes)), ((0xD800, 0xDFFF),))
            if not others:
                e = NOTHING
            else:
                first = _encode_charset(others) if encoded else char_ranges(list(others))
                e = seq(first, rest)
            deviations[codes] = e
        return e

    def build(node: dict) -> Expr:
        children = [k for k in node if k is not None]
        parts = [] if None in node else [EMPTY]
        d = deviation(tuple(sorted(ord(k) for k in children)))
        if type(d) is not Nothing:
            parts.append(d)
        for k in children:
            after = build(node[k])
            if type(after) is not Nothing:
                parts.append(seq(one(k), after))
        # children are distinct characters: no need for alt()'s deduplication (and hashing)
        if len(parts) == 1:
            return parts[0]
        return intern_node(Alt(tuple(parts))) if parts else NOTHING

    out = build(trie)
    build = None  # a recursive closure: kept, a reference cycle for the collector
    return out


def _length_bounds(e: Expr) -> tuple[int | None, int | None]:
    """(min, max) length in characters of a decoded-text expression; None when unknown
    (automata) or, for max, unbounded."""
    if isinstance(e, Empty):
        return 0, 0
    if isinstance(e, Literal):
        try:
            n = len(e.data.decode("utf-8"))
        except UnicodeDecodeError:
            return None, None
        return n, n
    if isinstance(e, (CharSet, ByteSet)):
        return 1, 1
    if isinstance(e, Seq):
        mn, mx = 0, 0
        for i in e.items:
            a, b = _length_bounds(i)
            if a is None:
                return None, None
            mn += a
            mx = None if mx is None or b is None else mx + b
        return mn, mx
    if isinstance(e, Alt):
        bounds = [_length_bounds(i) for i in e.items]
        if any(a is None for a, _ in bounds):
            return None, None
        mx = None if any(b is None for _, b in bounds) else max(b for _, b in bounds)
        return min(a for a, _ in bounds), mx
    if isinstance(e, Repeat):
        a, b = _length_bounds(e.item)
        if a is None:
            return None, None
        mx = None if e.max is None or b is None else b * e.max
        return a * e.min, mx
    return None, None


def _cap_repeats(e: Expr, limit: int) -> Expr | None:
    """``e`` with unbounded repetitions capped at one count, the largest that keeps every
    string within ``limit`` characters; None when impossible (automata inside)."""

    def cap(x: Expr, k: int) -> Expr:
        if isinstance(x, Seq):
            return seq([cap(i, k) for i in x.items])
        if isinstance(x, Alt):
            return alt([cap(i, k) for i in x.items])
        if isinstance(x, Repeat):
            inner = cap(x.item, k)
            top = x.max if x.max is not None else max(x.min, k)
            return rep(inner, x.min, top)
        return x

    mn, _ = _length_bounds(e)
    if mn is None or mn > limit:
        return None
    best = None
    lo_k, hi_k = 0, limit
    while lo_k <= hi_k:
        mid = (lo_k + hi_k) // 2
        c = cap(e, mid)
        _, mx = _length_bounds(c)
        if mx is not None and mx <= limit:
            best = c
            lo_k = mid + 1
        else:
            hi_k = mid - 1
    return best


def _complement_points(codes: list[int]) -> list[tuple[int, int]]:
    out = []
    cur = 0
    for c in codes:
        if c > cur:
            out.append((cur, c - 1))
        cur = c + 1
    if cur <= 0x10FFFF:
        out.append((cur, 0x10FFFF))
    return out


# --------------------------------------------------------------------------- public API


def _load_schema(schema):
    if isinstance(schema, (str, bytes, bytearray)):
        try:
            return json.loads(schema)
        except json.JSONDecodeError as e:
            raise SchemaError(f"schema is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    if hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    if isinstance(schema, (dict, bool)):
        return schema
    raise SchemaError(f"a schema must be a dict, a JSON string or a pydantic model, not {type(schema).__name__}")


def grammar_from_json_schema(
    schema,
    *,
    any_whitespace: bool = True,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    strict_mode: bool = True,
    lenient: bool = False,
    max_seconds: float = MAX_COMPILE_SECONDS,
) -> Grammar:
    """A grammar whose language is the JSON texts that validate against ``schema``.

    ``schema`` is a dict (or bool), a JSON string, or an object with ``model_json_schema()``
    (a pydantic model class). See the module docstring for the layout options, ``strict_mode``
    and the exact subsets produced. Raises :class:`SchemaError` for an invalid schema (with the
    JSON pointer), :class:`UnsupportedSchemaError` for a keyword that cannot be enforced
    (unless ``lenient``, which drops it with a warning) or when the conversion exceeds its
    budget (``max_seconds`` of time or :data:`MAX_RULES` rules).
    """
    root = _load_schema(schema)
    if not isinstance(root, (dict, bool)):
        raise SchemaError("a schema must be a JSON object or a boolean")
    conv = _Converter(
        root,
        any_whitespace=any_whitespace,
        indent=indent,
        separators=separators,
        strict_mode=strict_mode,
        lenient=lenient,
        budget=max_seconds,
    )
    # automaton products and complements (patterns, formats, lengths, key exclusions) share
    # the conversion's budget: none of them may run on for minutes or gigabytes
    try:
        with fsm_limits(deadline=conv.deadline, max_states=MAX_PRODUCT):
            return conv.convert()
    except GrammarError as e:
        if "automaton" in str(e):
            raise UnsupportedSchemaError("$budget", "", str(e)) from None
        raise


def builtin_json_grammar(*, any_whitespace: bool = True) -> Grammar:
    """A grammar for any JSON value."""
    return grammar_from_json_schema(True, any_whitespace=any_whitespace, strict_mode=False)
