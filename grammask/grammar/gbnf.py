"""GBNF (llama.cpp's grammar format, which XGrammar also reads) -> :class:`Grammar`.

A small recursive-descent parser. The syntax::

    # a comment, to the end of the line
    root  ::= item ("," ws item)*          # rule names: letters, digits, '-', '_'
    item  ::= "lit\\n" | [a-z0-9_] | [^"\\\\] | . | other-rule
    ws    ::= [ \\t\\n]{0,20}                # x* x+ x? x{m} x{m,} x{m,n} (also x{,n})

Literals and character classes take the escapes ``\\n \\r \\t \\\\ \\" \\[ \\] \\xHH \\uHHHH
\\UHHHHHHHH`` (any other escaped ASCII punctuation stands for itself); ``\\xHH`` is the code
point U+00HH, as in llama.cpp, not a raw byte. ``.`` is any character. Text is Unicode and
the IR encodes it as UTF-8.

Layout is lenient: a rule continues onto the next line while inside parentheses, after a
``|``, and whenever the next non-blank line does not start a new rule (``name ::=``).
"""

from __future__ import annotations

import re

from ..errors import GrammarError
from . import line_column, shortest_lengths, source_excerpt
from .ebnf import MAX_REPETITION
from .ir import (
    NOTHING,
    Expr,
    Grammar,
    Ref,
    alt,
    any_char,
    char_ranges,
    lit,
    negate_chars,
    normalize_ranges,
    opt,
    plus,
    refs_of,
    rep,
    seq,
    star,
)

__all__ = ["grammar_from_gbnf"]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_INT = re.compile(r"[0-9]+")
_RULE_START = re.compile(r"[A-Za-z0-9_-]+[ \t]*::=")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_MAX_NESTING = 200


def grammar_from_gbnf(text: str, *, start: str | None = None) -> Grammar:
    """Parse a grammar in GBNF syntax into the IR.

    Args:
        text: the grammar.
        start: the start rule (default ``root``).

    Returns:
        A :class:`Grammar` with the rules reachable from the start rule.

    Raises:
        GrammarError: a syntax error (line, column and what was expected), a rule defined
            twice, an undefined rule, a missing start rule, a repetition count beyond
            :data:`grammask.grammar.ebnf.MAX_REPETITION`, or an empty language.
    """
    start = "root" if start is None else start
    parser = _Parser(text)
    rules, uses = parser.parse()
    if start not in rules:
        known = ", ".join(rules) or "none"
        raise GrammarError(f"GBNF grammar has no rule {start!r} to start from (rules: {known})")
    # Keep the rules reachable from the start, in definition order.
    reachable = {start}
    stack = [start]
    while stack:
        for name in refs_of(rules[stack.pop()]):
            if name not in rules:
                offset = uses[name]
                line, col = line_column(text, offset)
                raise GrammarError(
                    f"GBNF grammar, line {line} column {col}: rule {name!r} is used but not "
                    f"defined{source_excerpt(text, line, col)}"
                )
            if name not in reachable:
                reachable.add(name)
                stack.append(name)
    grammar = Grammar({n: body for n, body in rules.items() if n in reachable}, start)
    if shortest_lengths(grammar)[start] is None:
        raise GrammarError(
            f"GBNF grammar: rule {start!r} derives no finite string: its language is empty "
            "(every derivation recurses forever or uses an empty character class)"
        )
    return grammar


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.uses: dict[str, int] = {}

    # ----------------------------------------------------------------- helpers

    def error(self, message: str, pos: int | None = None) -> GrammarError:
        pos = self.pos if pos is None else pos
        line, col = line_column(self.text, pos)
        found = self.text[pos : pos + 1]
        got = f", found {found!r}" if found else ", found the end of the grammar"
        return GrammarError(
            f"GBNF grammar, line {line} column {col}: {message}{got}"
            f"{source_excerpt(self.text, line, col)}"
        )

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip(self, newlines: bool) -> None:
        """Skip blanks and comments; newlines too when ``newlines``."""
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                break

    def at_line_start(self) -> bool:
        line_begin = self.text.rfind("\n", 0, self.pos) + 1
        return self.text[line_begin : self.pos].strip(" \t") == ""

    def at_rule_start(self) -> bool:
        return _RULE_START.match(self.text, self.pos) is not None

    # ----------------------------------------------------------------- grammar

    def parse(self) -> tuple[dict[str, Expr], dict[str, int]]:
        rules: dict[str, Expr] = {}
        while True:
            self.skip(newlines=True)
            if self.pos >= len(self.text):
                break
            name_pos = self.pos
            m = _NAME.match(self.text, self.pos)
            if m is None:
                raise self.error("expected a rule name (letters, digits, '-' or '_')")
            name = m.group(0)
            self.pos = m.end()
            self.skip(newlines=False)
            if not self.text.startswith("::=", self.pos):
                raise self.error(f"expected '::=' after rule name {name!r}")
            if name in rules:
                line, col = line_column(self.text, name_pos)
                raise GrammarError(
                    f"GBNF grammar, line {line} column {col}: rule {name!r} is defined more "
                    f"than once{source_excerpt(self.text, line, col)}"
                )
            self.pos += 3
            self.skip(newlines=True)
            rules[name] = self.alternatives(nested=False)
            if self.peek() == ")":
                raise self.error("unmatched ')'")
            if self.pos < len(self.text) and not self.at_rule_start():
                raise self.error("expected a new rule or the end of the grammar")
        return rules, self.uses

    def alternatives(self, nested: bool) -> Expr:
        options = [self.sequence(nested)]
        while self.peek() == "|":
            self.pos += 1
            self.skip(newlines=True)
            options.append(self.sequence(nested))
        return alt(options)

    def sequence(self, nested: bool) -> Expr:
        items: list[Expr] = []
        while True:
            self.skip(newlines=nested)
            c = self.peek()
            if c in ("\r", "\n"):
                # Top level: the rule goes on unless the next non-blank line starts a rule.
                self.skip(newlines=True)
                if self.pos >= len(self.text) or self.at_rule_start():
                    break
                continue
            if c == "" or c == "|" or c == ")":
                break
            if not nested and self.at_line_start() and self.at_rule_start():
                break  # an empty last alternative: "a ::= x |" then a new rule
            items.append(self.postfix(self.primary()))
        return seq(items)

    def postfix(self, item: Expr) -> Expr:
        while True:
            c = self.peek()
            if c == "*":
                item = star(item)
            elif c == "+":
                item = plus(item)
            elif c == "?":
                item = opt(item)
            elif c == "{":
                item = self.braces(item)
                continue
            else:
                return item
            self.pos += 1

    def braces(self, item: Expr) -> Expr:
        brace = self.pos
        self.pos += 1
        self.skip(newlines=True)
        lo = self.integer()
        self.skip(newlines=True)
        if lo is None and self.peek() != ",":
            raise self.error("expected a repetition count in '{...}'")
        if self.peek() == "}":
            if lo is None:
                raise self.error("expected a repetition count in '{...}'")
            hi: int | None = lo
        elif self.peek() == ",":
            self.pos += 1
            self.skip(newlines=True)
            hi = self.integer()
            self.skip(newlines=True)
            lo = 0 if lo is None else lo
        else:
            raise self.error("expected ',' or '}' in a repetition '{m,n}'")
        if self.peek() != "}":
            raise self.error("expected '}' to close the repetition")
        self.pos += 1
        if hi is not None and hi < lo:
            raise self.error(f"repetition {{{lo},{hi}}} has its maximum below its minimum", brace)
        if max(lo, hi or 0) > MAX_REPETITION:
            raise self.error(
                f"repetition count too large (at most {MAX_REPETITION}); use * or +", brace
            )
        return rep(item, lo, hi)

    def integer(self) -> int | None:
        m = _INT.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return int(m.group(0))

    def primary(self) -> Expr:
        c = self.peek()
        start = self.pos
        if c == '"':
            return self.literal()
        if c == "[":
            return self.char_class()
        if c == ".":
            self.pos += 1
            return any_char()
        if c == "(":
            if self.depth >= _MAX_NESTING:
                raise self.error(f"parentheses nested deeper than {_MAX_NESTING} levels")
            self.depth += 1
            self.pos += 1
            self.skip(newlines=True)
            inner = self.alternatives(nested=True)
            if self.peek() != ")":
                raise self.error("expected ')' (or '|' or an element)")
            self.pos += 1
            self.depth -= 1
            return inner
        if c == "<":
            raise self.error("token references (<...>) are not supported")
        m = _NAME.match(self.text, self.pos)
        if m is not None:
            name = m.group(0)
            self.pos = m.end()
            save = self.pos
            self.skip(newlines=False)
            if self.text.startswith("::=", self.pos):
                raise self.error("a new rule must start on a new line", start)
            self.pos = save
            self.uses.setdefault(name, start)
            return Ref(name)
        hint = " (a rule is defined with '::=')" if c in ("=", ":") else ""
        raise self.error(f"expected an element (a literal, [class], rule name, '.' or '('){hint}")

    # ----------------------------------------------------------------- literals

    def literal(self) -> Expr:
        open_pos = self.pos
        self.pos += 1
        out = []
        while True:
            c = self.peek()
            if c == "" or c in "\r\n":
                raise self.error("unterminated string literal (opened here)", open_pos)
            if c == '"':
                self.pos += 1
                return lit("".join(out))
            out.append(chr(self.char()))

    def char_class(self) -> Expr:
        open_pos = self.pos
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        ranges = []
        while True:
            c = self.peek()
            if c == "":
                raise self.error("unterminated character class (opened here)", open_pos)
            if c == "]":
                self.pos += 1
                break
            lo_pos = self.pos
            lo = self.char()
            hi = lo
            if self.peek() == "-" and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                hi = self.char()
                if hi < lo:
                    raise self.error("character range is reversed", lo_pos)
            ranges.append((lo, hi))
        if negated:
            return negate_chars(normalize_ranges(ranges, 0x10FFFF))
        return char_ranges(ranges) if ranges else NOTHING

    def char(self) -> int:
        """One character of a literal or class, escapes decoded; returns the code point."""
        c = self.peek()
        if c != "\\":
            self.pos += 1
            return ord(c)
        esc_pos = self.pos
        e = self.text[self.pos + 1 : self.pos + 2]
        if e in _SIMPLE_ESCAPES:
            self.pos += 2
            return ord(_SIMPLE_ESCAPES[e])
        if e in _HEX_ESCAPES:
            width = _HEX_ESCAPES[e]
            digits = self.text[self.pos + 2 : self.pos + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise self.error(f"expected {width} hex digits after '\\{e}'", esc_pos)
            cp = int(digits, 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise self.error(f"'\\{e}{digits}' is not a Unicode scalar value", esc_pos)
            self.pos += 2 + width
            return cp
        if e and e.isascii() and not e.isalnum() and e not in " \t\r\n":
            self.pos += 2  # lenient: an escaped punctuation character stands for itself
            return ord(e)
        raise self.error(
            "unknown escape (expected \\n \\r \\t \\\\ \\\" \\[ \\] \\xHH \\uHHHH \\UHHHHHHHH)",
            esc_pos,
        )

