"""Lark grammars -> :class:`~grammask.grammar.ir.Grammar`.

The grammar text is parsed by the lark package's own loader (``GrammarBuilder``: it resolves
``%import``, ``%override``, ``%extend`` and ``%ignore`` and validates names); this module only
lowers the rule and terminal trees it produces. It does not use Lark's BNF compilation, so
``x*``, ``x~2..5`` and ``[x]`` stay :class:`~grammask.grammar.ir.Repeat` nodes instead of
helper rules.

Semantics: the language is the one Lark's Earley parser with ``lexer="dynamic_complete"``
accepts.

- A terminal's lexemes are the non-empty strings ``s`` that Lark's regex ``R`` for the
  terminal matches completely from the start: ``re.match(R, s).end() == len(s)``. That is
  leftmost-first regex semantics, so alternatives and lazy quantifiers matter (``".*?"``
  stops at its first chance). Plain string literals (also with the ``i`` flag) and
  ``"a".."z"`` ranges are lowered directly; every other terminal goes through
  :func:`grammask.grammar.regex.regex_to_expr` with ``semantics="match"``.
- ``%ignore``: Lark's scanner, wherever the parser waits for a terminal (and at the end,
  once the start rule is complete), may skip ignored text, repeatedly, each time by the one
  match ``re.match`` finds there: the longest prefix that is a lexeme, no truncations.
  The IR puts a run of ignored pieces before every terminal and one at the end, and keeps
  the greediness where the following characters decide it (see :class:`_IgnoreModel`):
  after ``%ignore WS`` a terminal cannot start with whitespace, after a ``#...`` line
  comment only a newline (or the end) may follow.
- Rule modifiers (``?rule``, ``_rule``, ``!rule``), aliases and priorities shape Lark's
  parse tree, not its language, and are dropped.

Residual differences from Lark (cases where Lark's scanner looks further into the text):

- A terminal's trailing lookahead, ``$`` or ``\\b`` sees the text after the lexeme in
  Lark; the IR evaluates them as if the lexeme stood alone. The same holds for ignored
  terminals with lookarounds.
- An ignored piece followed by text that is a proper prefix of a possible extension of the
  piece (whether Lark's greedy match reaches further depends on characters after that
  text): the IR allows it. Whitespace, line comments and block comments never hit this.
- Lark refuses terminals that can match the empty string in its dynamic lexers; the IR
  accepts them and uses their non-empty lexemes.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass

from ..errors import GrammarError
from . import line_column, shortest_lengths, source_excerpt
from .ir import (
    EMPTY,
    Alt,
    CharSet,
    Expr,
    Grammar,
    Literal,
    alt,
    byte_ranges,
    char_ranges,
    lit,
    opt,
    plus,
    ref,
    rep,
    seq,
    star,
)

__all__ = ["MAX_REPETITION", "grammar_from_lark"]

# Largest repetition count accepted in ``x ~ n..m``: bigger counts make automata (and Lark's
# own expansion) blow up, and are almost always a mistake.
MAX_REPETITION = 10_000
# Guard against templates that instantiate themselves with ever-growing arguments.
_MAX_TEMPLATE_INSTANCES = 2_000

# Generated rule names: Lark reserves names starting with "__", so these never collide.
_IGNORE_RULE = "__gm_ignore"
_START_RULE = "__gm_start"
# Bound on the automata built for %ignore (they are tiny for whitespace and comments).
_MAX_IGNORE_EXITS = 16

_RE_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "l": re.LOCALE,
             "u": re.UNICODE, "x": re.VERBOSE}


def grammar_from_lark(text: str, *, start: str | None = None) -> Grammar:
    """Parse a grammar in Lark syntax into the IR.

    Args:
        text: the grammar (rules, terminals, ``%import``, ``%ignore``, templates...).
        start: the start rule (default ``start``).

    Returns:
        A :class:`Grammar` whose language is what ``Lark(text, parser="earley",
        lexer="dynamic_complete", start=start)`` parses (see the module docstring for the
        exact semantics and the few residual differences).

    Raises:
        GrammarError: a syntax error (with line and column), an undefined rule or terminal,
            a missing start rule, ``%declare``, a repetition beyond :data:`MAX_REPETITION`,
            an unsupported regex, or a start rule whose language is empty.
    """
    start = "start" if start is None else start
    lark_grammar = _load(text)
    return _Lowering(text, lark_grammar, start).run()


# --------------------------------------------------------------------------- loading


def _load(text: str):
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.exceptions import UnexpectedInput
    from lark.load_grammar import GrammarBuilder

    if "%declare" in text:
        _refuse_declare(text)
    try:
        builder = _builder_class(GrammarBuilder)()
        builder.load_grammar(text, "<string>")
        return builder.build()
    except LarkGrammarError as e:
        raise GrammarError(_locate_lark_message(text, str(e))) from None
    except UnexpectedInput as e:
        raise GrammarError(
            f"Lark grammar, line {e.line} column {e.column}: unexpected "
            f"{_describe_unexpected(e)}{source_excerpt(text, e.line, e.column)}"
        ) from None
    except OSError as e:
        raise GrammarError(f"Lark grammar: cannot %import {e.filename or ''!s}: {e.strerror}") \
            from None
    except RecursionError:
        raise GrammarError("Lark grammar is nested too deeply") from None


#: ``%import`` results of Lark's bundled grammars, by (module, aliases): the definitions
#: they add (kept pristine: every use gets a copy) and the files they read.
_IMPORTS: dict = {}
_IMPORTS_MAX = 256


@functools.lru_cache(maxsize=None)
def _builder_class(base):
    """Lark's GrammarBuilder, remembering what an ``%import`` of a bundled grammar gives.

    Lark parses the imported file again for every grammar that imports from it (``%import
    common.NUMBER`` reads and parses all of common.lark: about half of the time to load a
    small grammar). A library import from Lark's own grammars, with no import paths and from
    the top-level grammar, depends only on the module and the aliases, so its definitions are
    computed once and copied in afterwards. Anything else goes to Lark as it is."""

    from lark.exceptions import GrammarError as LarkGrammarError

    class CachingBuilder(base):
        def do_import(self, dotted_path, base_path, aliases, base_mangle=None):
            # only library imports (no base path: a relative one reads a file beside the
            # grammar, which differs from grammar to grammar)
            if base_mangle is not None or base_path is not None or self.import_paths \
                    or len(_IMPORTS) >= _IMPORTS_MAX:
                return super().do_import(dotted_path, base_path, aliases, base_mangle)
            key = (tuple(dotted_path), tuple(sorted(aliases.items())))
            hit = _IMPORTS.get(key)
            if hit is None:
                before = dict(self._definitions)
                files = dict(self.used_files)
                super().do_import(dotted_path, base_path, aliases, base_mangle)
                added = {k: v for k, v in self._definitions.items()
                         if k not in before or before[k] is not v}
                read = {k: v for k, v in self.used_files.items() if k not in files}
                if not all(_is_bundled(f) for f in read):  # a user file of that name
                    return None
                _IMPORTS[key] = (copy.deepcopy(added), read)
                return None
            added, read = hit
            grammar_path = "/".join(dotted_path) + ".lark"
            for name in added:
                if name in self._definitions:
                    raise LarkGrammarError(f"Cannot import '{name}' from '{grammar_path}': "
                                           "Symbol already defined.")
            self._definitions.update(copy.deepcopy(added))
            self.used_files.update(read)
            return None

    return CachingBuilder


def _is_bundled(path) -> bool:
    """Whether Lark read ``path`` from its own package (its grammars: common, unicode...)."""
    return getattr(path, "pkg_name", None) == "lark"


def _refuse_declare(text: str) -> None:
    m = re.search(r"^[ \t]*%declare\b", text, re.MULTILINE)
    if m is None:
        return
    line, col = line_column(text, m.start() + m.group(0).index("%"))
    raise GrammarError(
        f"Lark grammar, line {line} column {col}: %declare is not supported: a declared "
        "terminal has no pattern (a post-lexer produces it), so no byte-level automaton can "
        f"match it{source_excerpt(text, line, col)}"
    )


# Names of the tokens of Lark's own grammar syntax, for messages.
_LARK_TOKENS = {
    "_LPAR": "'('", "_RPAR": "')'", "_LBRA": "'['", "_RBRA": "']'", "_LBRACE": "'{'",
    "_RBRACE": "'}'", "_COLON": "':'", "_COMMA": "','", "_OR": "'|'", "_DOT": "'.'",
    "_DOTDOT": "'..'", "TILDE": "'~'", "_TO": "'->'", "OP": "an operator (? * +)",
    "_NL": "end of line", "_NL_OR": "'|' on a new line", "RULE": "a rule name",
    "TERMINAL": "a terminal name", "STRING": "a string", "REGEXP": "a regex",
    "NUMBER": "a number", "RULE_MODIFIERS": "a rule modifier", "$END": "end of grammar",
}


def _describe_unexpected(e) -> str:
    token = getattr(e, "token", None)
    if token is None:
        what = "input"
    elif str(token).strip() == "":
        what = "end of line" if "\n" in str(token) else "end of grammar"
    else:
        what = repr(str(token))
    expected = getattr(e, "expected", None) or getattr(e, "allowed", None)
    if expected:
        names = sorted({_LARK_TOKENS.get(str(x), str(x)) for x in expected})
        what += "; expected " + (names[0] if len(names) == 1 else "one of: " + ", ".join(names))
    return what


def _locate_lark_message(text: str, message: str) -> str:
    """Lark's loader errors without a position (undefined or duplicate names) get the line
    and column of the name they quote."""
    message = message.strip()
    if re.search(r"\bline \d+", message):
        return "Lark grammar: " + message
    m = re.search(r"'([A-Za-z_][A-Za-z0-9_]*)'", message) or re.search(
        r"\b(?:rule|terminal|Rule|Terminal) ([A-Za-z_][A-Za-z0-9_]*)", message
    )
    if m is not None:
        name = m.group(1)
        nth = 1 if "more than once" in message else 0
        offset = _find_name(text, name, nth)
        if offset is not None:
            line, col = line_column(text, offset)
            return f"Lark grammar, line {line} column {col}: {message}" + source_excerpt(
                text, line, col
            )
    return "Lark grammar: " + message


def _find_name(text: str, name: str, nth: int) -> int | None:
    """Offset of the ``nth`` occurrence of ``name`` as a word outside literals and comments
    (an approximation: good enough to point a message at the right line)."""
    word = re.compile(r'"(?:\\.|[^"\\\n])*"|/(?:\\.|[^/\\\n])+/|//[^\n]*|\b' + re.escape(name) + r"\b")
    count = 0
    for m in word.finditer(text):
        if m.group(0) == name:
            if count == nth:
                return m.start()
            count += 1
    return None


# --------------------------------------------------------------------------- lowering


@dataclass(frozen=True)
class _Arg:
    """A template argument: its lowered expression, or the template it names."""

    expr: Expr | None
    template: str | None


class _Lowering:
    def __init__(self, text: str, lark_grammar, start: str) -> None:
        self.text = text
        self.start = start
        self.rule_defs = {}
        self.rule_tokens = {}
        for name, params, tree, _options in lark_grammar.rule_defs:
            self.rule_defs[str(name)] = (tuple(str(p) for p in params), tree)
            self.rule_tokens[str(name)] = name
        self.term_defs = {str(name): tree for name, (tree, _prio) in lark_grammar.term_defs}
        self.term_tokens = {str(name): name for name, _ in lark_grammar.term_defs}
        self.ignore = [str(n) for n in lark_grammar.ignore]
        self.rules: dict[str, Expr] = {}
        self.todo: list[str] = []
        self.lexeme_cache: dict = {}
        self.occurrence_cache: dict = {}
        self.templates: dict = {}
        self.ignore_model: _IgnoreModel | None = None

    def run(self) -> Grammar:
        if self.start not in self.rule_defs:
            known = ", ".join(sorted(n for n in self.rule_defs if not self.rule_defs[n][0]))
            hint = f" (rules: {known})" if known else " (the grammar defines no rules)"
            raise GrammarError(f"Lark grammar: start rule {self.start!r} is not defined{hint}")
        if self.rule_defs[self.start][0]:
            raise GrammarError(
                f"Lark grammar: start rule {self.start!r} is a template; it needs arguments"
            )
        try:
            if self.ignore:
                self.ignore_model = _IgnoreModel(
                    [self._terminal_lexemes(name) for name in self.ignore], self.rules
                )
                self.rules[_START_RULE] = seq(ref(self.start), self.ignore_model.trailing())
            self._use_rule(self.start)
            while self.todo:
                name = self.todo.pop()
                _params, tree = self.rule_defs[name]
                self.rules[name] = self._lower(tree, {})
        except RecursionError:
            raise GrammarError("Lark grammar is nested too deeply") from None
        grammar = Grammar(dict(self.rules), _START_RULE if self.ignore else self.start)
        if shortest_lengths(grammar)[grammar.start] is None:
            raise GrammarError(
                f"Lark grammar: start rule {self.start!r} derives no finite string: its "
                "language is empty (every derivation recurses forever)"
            )
        return grammar

    # ----------------------------------------------------------------- rules

    def _use_rule(self, name: str) -> Expr:
        if name not in self.rules and name not in self.todo:
            self.todo.append(name)
            self.rules[name] = EMPTY  # placeholder, keeps discovery order
        return ref(name)

    def _lower(self, node, env: dict) -> Expr:
        from lark import Token, Tree
        from lark.grammar import NonTerminal, Terminal

        if isinstance(node, Terminal):
            return self._terminal_occurrence(node.name)
        if isinstance(node, NonTerminal):
            name = node.name
            if name in env:
                arg = env[name]
                if arg.expr is None:
                    raise GrammarError(
                        f"Lark grammar: template {arg.template!r} is used without arguments"
                    )
                return arg.expr
            if name not in self.rule_defs:
                raise GrammarError(f"Lark grammar: rule {name!r} is used but not defined")
            if self.rule_defs[name][0]:
                raise self._error(f"template {name!r} is used without arguments", name=name)
            return self._use_rule(name)
        if not isinstance(node, Tree):
            raise GrammarError(f"Lark grammar: unexpected element {node!r}")
        kind = node.data
        children = node.children
        if kind == "expansions":
            return alt(self._lower(c, env) for c in children)
        if kind == "expansion":
            return seq(self._lower(c, env) for c in children)
        if kind == "alias":
            return self._lower(children[0], env)
        if kind == "value":
            return self._lower(children[0], env)
        if kind == "maybe":
            return opt(self._lower(children[0], env))
        if kind == "expr":
            item = self._lower(children[0], env)
            op = children[1]
            if op == "?":
                return opt(item)
            if op == "*":
                return star(item)
            if op == "+":
                return plus(item)
            if op == "~":
                lo, hi = self._repeat_bounds(children[1:])
                return rep(item, lo, hi)
            raise GrammarError(f"Lark grammar: unknown operator {op!r}")
        if kind == "literal":
            (token,) = children
            return self._anonymous_occurrence(token)
        if kind == "range":
            return self._range(*children)
        if kind == "template_usage":
            return self._template(children, env)
        if isinstance(node, Token):  # pragma: no cover - Lark never leaves bare tokens here
            raise GrammarError(f"Lark grammar: unexpected token {node!r}")
        raise GrammarError(f"Lark grammar: unsupported construct {kind!r}")

    def _repeat_bounds(self, tokens) -> tuple[int, int]:
        tilde, *numbers = tokens
        lo = int(numbers[0])
        hi = int(numbers[-1])
        if lo < 0 or hi < lo:
            raise self._error(f"bad repetition range {lo}..{hi}", tilde)
        if hi > MAX_REPETITION:
            raise self._error(
                f"repetition count {hi} is too large (at most {MAX_REPETITION}); use * or + "
                "for unbounded repetition",
                tilde,
            )
        return lo, hi

    def _template(self, children, env: dict) -> Expr:
        name_node, *arg_nodes = children
        name = name_node.name
        if name in env:
            if env[name].template is None:
                raise GrammarError(
                    f"Lark grammar: template parameter {name!r} is used as a template but "
                    "its argument is not one"
                )
            name = env[name].template
        if name not in self.rule_defs or not self.rule_defs[name][0]:
            raise self._error(f"{name!r} is not a template", name=name)
        params, tree = self.rule_defs[name]
        if len(params) != len(arg_nodes):
            raise GrammarError(
                f"Lark grammar: template {name!r} takes {len(params)} arguments, "
                f"got {len(arg_nodes)}"
            )
        args = tuple(self._template_arg(a, env) for a in arg_nodes)
        key = (name, args)
        instance = self.templates.get(key)
        if instance is None:
            if len(self.templates) >= _MAX_TEMPLATE_INSTANCES:
                raise GrammarError(
                    f"Lark grammar: more than {_MAX_TEMPLATE_INSTANCES} template "
                    f"instances (does template {name!r} instantiate itself with growing "
                    "arguments?)"
                )
            instance = f"__gm_tpl_{name}_{len(self.templates)}"
            self.templates[key] = instance
            self.rules[instance] = EMPTY  # placeholder against recursion
            self.rules[instance] = self._lower(tree, dict(zip(params, args)))
        return ref(instance)

    def _template_arg(self, node, env: dict) -> _Arg:
        from lark import Tree
        from lark.grammar import NonTerminal

        inner = node.children[0] if isinstance(node, Tree) and node.data == "value" else node
        if isinstance(inner, NonTerminal):
            if inner.name in env:
                return env[inner.name]
            params = self.rule_defs.get(inner.name, ((),))[0]
            if params:
                return _Arg(None, inner.name)
        return _Arg(self._lower(node, env), None)

    # ----------------------------------------------------------------- terminals

    def _with_ignore(self, lexemes: Expr) -> Expr:
        """A terminal occurrence: the ignored text Lark may skip before it, then a lexeme."""
        if self.ignore_model is None:
            return lexemes
        return self.ignore_model.before(lexemes)

    def _terminal_occurrence(self, name: str) -> Expr:
        """What an occurrence of the named terminal in a rule matches: a lexeme, then the
        optional run of ignored text. Small lexeme sets are inlined, others get one rule
        named after the terminal."""
        cached = self.occurrence_cache.get(("term", name))
        if cached is not None:
            return cached
        lexemes = self._terminal_lexemes(name)
        if _is_small(lexemes):
            out = self._with_ignore(lexemes)
        else:
            self.rules[name] = self._with_ignore(lexemes)
            out = ref(name)
        self.occurrence_cache[("term", name)] = out
        return out

    def _anonymous_occurrence(self, token) -> Expr:
        from lark.exceptions import GrammarError as LarkGrammarError
        from lark.load_grammar import _literal_to_pattern

        try:
            pattern = _literal_to_pattern(token)
        except LarkGrammarError as e:
            raise self._error(str(e), token) from None
        key = ("pattern", type(pattern).__name__, pattern.value, pattern.flags)
        cached = self.occurrence_cache.get(key)
        if cached is not None:
            return cached
        lexemes = self._pattern_lexemes(pattern, token)
        if _is_small(lexemes):
            out = self._with_ignore(lexemes)
        else:
            name = f"__gm_anon_{len(self.occurrence_cache)}"
            self.rules[name] = self._with_ignore(lexemes)
            out = ref(name)
        self.occurrence_cache[key] = out
        return out

    def _range(self, start_tok, end_tok) -> Expr:
        lo, hi = _range_bounds(start_tok, end_tok)
        if lo > hi:
            raise self._error(f"empty range {start_tok}..{end_tok}", start_tok)
        return self._with_ignore(char_ranges([(lo, hi)]))

    def _terminal_lexemes(self, name: str) -> Expr:
        """The lexemes of a named terminal (without the ignore suffix)."""
        cached = self.lexeme_cache.get(name)
        if cached is not None:
            return cached
        if name not in self.term_defs:
            raise GrammarError(f"Lark grammar: terminal {name!r} is used but not defined")
        tree = self.term_defs[name]
        if tree is None:
            raise GrammarError(f"Lark grammar: terminal {name!r} is declared without a pattern")
        out = _fast_lexemes(tree)
        if out is None:
            out = self._pattern_lexemes(_terminal_pattern(tree, name), self.term_tokens[name])
        self.lexeme_cache[name] = out
        return out

    def _pattern_lexemes(self, pattern, token) -> Expr:
        from lark.lexer import PatternStr

        if isinstance(pattern, PatternStr):
            if "i" in pattern.flags:
                return _ignorecase_literal(pattern.value)
            return lit(pattern.value)
        flags = 0
        for f in pattern.flags:
            flags |= _RE_FLAGS[f]
        try:
            return _regex_lexemes(pattern.value, flags)
        except GrammarError as e:
            raise self._error(f"in regex {pattern.to_regexp()!r}: {e}", token) from None

    # ----------------------------------------------------------------- positions

    def _error(self, message: str, token=None, name: str | None = None) -> GrammarError:
        """A GrammarError pointing at ``token`` (a lark Token with a position) or at the first
        use of ``name`` in the text."""
        line = getattr(token, "line", None)
        column = getattr(token, "column", None)
        if (line is None or column is None) and name is not None:
            offset = _find_name(self.text, name, 0)
            if offset is not None:
                line, column = line_column(self.text, offset)
        if line is None or column is None:
            return GrammarError(f"Lark grammar: {message}")
        return GrammarError(
            f"Lark grammar, line {line} column {column}: {message}"
            f"{source_excerpt(self.text, line, column)}"
        )


class _IgnoreModel:
    """Lark's %ignore, exactly where the next characters decide it.

    Lark's scanner skips ignored text at a position by the single match ``re.match`` finds
    there, and for regexes without lookarounds that match is the *longest* prefix of the
    remaining input that is a lexeme of the ignored terminal: every path the backtracking
    matcher tries before the winning one fails on each prefix of the input as well, so a
    longer lexeme prefix would have been won by that same shorter path. So an
    ignored piece ``g`` is only skipped as a whole when no lexeme extends ``g`` into the
    text after it. After a piece that ends in state ``q`` of its terminal's minimal DFA, the
    forbidden continuations are ``E_q = {v non-empty : g v is a lexeme} . anything``; for
    whitespace that is "starts with whitespace", for a line comment "starts with anything but
    a newline", for a block comment nothing.

    The runs of ignored pieces become automata: an NFA whose states remember the *exit
    class* of the last piece (pieces whose ``E_q`` are equal share one; an empty ``E_q`` is
    no constraint at all), where a piece may only follow a piece whose ``E`` it does not
    start with. A terminal occurrence is ``run . lexeme``, where the run may only end in the
    classes whose ``E`` the lexeme does not start with; a terminal whose lexemes split on
    that question is split into variants. The trailing run (end of input) may end anywhere.

    Residual (permissive) case: a piece or lexeme that does not start with ``E_q`` but is a
    proper prefix of a string that does; whether Lark's greedy match reaches past it
    depends on text further on, and the IR allows it.
    """

    def __init__(self, lexemes: list[Expr], rules: dict[str, Expr]) -> None:
        from .fsm import Dfa

        self.rules = rules
        self.anything = Dfa.from_expr(star(byte_ranges([(0, 255)])))
        # Each ignored terminal's minimal DFA, and per accepting state its exit class.
        self.classes: list = []  # the forbidden-continuation DFAs E, one per class
        pieces = []  # (dfa of pieces ending in q, class index or None)
        for expr in lexemes:
            d = Dfa.from_expr(expr)
            for q, acc in enumerate(d.accepting):
                if not acc:
                    continue
                ending_here = Dfa(d.start, d.edges, [s == q for s in range(d.n_states)])
                pieces.append((ending_here, self._class_of(d, q)))
        self.pieces = pieces
        self.runs: dict[frozenset, Expr] = {}
        self.lexeme_cache: dict = {}

    def _class_of(self, d, q: int) -> int | None:
        from .fsm import Dfa

        extension = Dfa(q, d.edges, d.accepting).difference(_EPSILON_DFA())
        if extension.is_empty():
            return None
        forbidden = extension.concat(self.anything)
        for i, other in enumerate(self.classes):
            if forbidden.difference(other).is_empty() and other.difference(forbidden).is_empty():
                return i
        if len(self.classes) >= _MAX_IGNORE_EXITS:
            raise GrammarError("Lark grammar: %ignore terminals too complex to model")
        self.classes.append(forbidden)
        return len(self.classes) - 1

    def trailing(self) -> Expr:
        """The ignored text at the end of the input: any run."""
        return self._run(frozenset(range(len(self.classes))))

    def before(self, lexemes: Expr) -> Expr:
        """A terminal occurrence with the ignored run that may precede it."""
        key = lexemes
        cached = self.lexeme_cache.get(key)
        if cached is not None:
            return cached
        from .fsm import Dfa

        everything = frozenset(range(len(self.classes)))
        if not self.classes:
            out = seq(self._run(everything), lexemes)
        else:
            d = Dfa.from_expr(lexemes)
            variants = [(d, everything, lexemes)]
            for c, forbidden in enumerate(self.classes):
                split = []
                for dv, exits, expr in variants:
                    bad = dv.intersect(forbidden)
                    if bad.is_empty():
                        split.append((dv, exits, expr))
                        continue
                    good = dv.difference(forbidden)
                    if good.is_empty():  # all of it starts with what extends the piece
                        split.append((dv, exits - {c}, expr))
                        continue
                    split.append((good, exits, None))
                    split.append((bad, exits - {c}, None))
                variants = split
            out = alt(
                seq(self._run(exits), expr if expr is not None else dv.to_expr("lexemes"))
                for dv, exits, expr in variants
            )
        self.lexeme_cache[key] = out
        return out

    def _run(self, exits: frozenset) -> Expr:
        """Reference to the rule matching runs of ignored pieces whose last piece's class is
        in ``exits`` (or that are empty, or end in an unconstrained piece)."""
        run = self.runs.get(exits)
        if run is None:
            name = _IGNORE_RULE if not self.runs else f"{_IGNORE_RULE}_{len(self.runs)}"
            self.rules[name] = self._run_expr(exits)
            run = self.runs[exits] = ref(name)
        return run

    def _run_expr(self, exits: frozenset) -> Expr:
        from .fsm import Nfa, determinize

        nfa = Nfa()
        free = nfa.state()  # nothing yet, or the last piece constrains nothing
        state = [nfa.state() for _ in self.classes]
        for piece, cls in self.pieces:
            dst = free if cls is None else state[cls]
            nfa.build(piece.to_expr(), free, dst)
            for c, forbidden in enumerate(self.classes):
                allowed = piece.difference(forbidden)
                if not allowed.is_empty():
                    nfa.build(allowed.to_expr(), state[c], dst)
        finals = {free} | {state[c] for c in exits}
        return determinize(nfa, free, finals).minimize().to_expr("ignored")


@functools.lru_cache(maxsize=1)
def _EPSILON_DFA():
    from .fsm import Dfa

    return Dfa.from_expr(EMPTY)


def _is_small(expr: Expr) -> bool:
    if isinstance(expr, (Literal, CharSet)):
        return True
    return isinstance(expr, Alt) and all(isinstance(i, (Literal, CharSet)) for i in expr.items)


def _terminal_pattern(tree, name: str):
    """The single regex (a lark Pattern) Lark builds for a terminal's tree."""
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.load_grammar import PrepareLiterals, TerminalTreeToPattern, nr_deepcopy_tree

    try:
        return (PrepareLiterals() * TerminalTreeToPattern()).transform(nr_deepcopy_tree(tree))
    except LarkGrammarError as e:
        raise GrammarError(f"Lark grammar: terminal {name}: {e}") from None


def _fast_lexemes(tree) -> Expr | None:
    """Lexemes of terminals whose regex needs no leftmost-first reasoning: one range, or a
    flat alternation of plain literals (Lark orders those longest first, so each literal
    is its own complete match). None for anything else."""
    from lark import Tree

    if not (isinstance(tree, Tree) and tree.data == "expansions"):
        return None
    items = []
    for expansion in tree.children:
        if not (isinstance(expansion, Tree) and expansion.data == "expansion"):
            return None
        if len(expansion.children) != 1:
            return None
        value = expansion.children[0]
        if not (isinstance(value, Tree) and value.data == "value"):
            return None
        (leaf,) = value.children
        if not isinstance(leaf, Tree):
            return None
        if leaf.data == "range":
            if len(tree.children) != 1:
                return None
            lo, hi = _range_bounds(*leaf.children)
            return char_ranges([(lo, hi)]) if lo <= hi else None
        if leaf.data != "literal" or leaf.children[0].type != "STRING":
            return None
        raw = leaf.children[0].value
        if not raw.endswith('"'):  # has the "i" flag
            return None
        items.append(_string_value(leaf.children[0]))
    if any(not s for s in items):
        return None
    return alt(lit(s) for s in items)


def _string_value(token) -> str:
    from lark.load_grammar import _literal_to_pattern

    return _literal_to_pattern(token).value


def _range_bounds(start_tok, end_tok) -> tuple[int, int]:
    from lark.load_grammar import eval_escaping

    lo = eval_escaping(start_tok.value[1:-1])
    hi = eval_escaping(end_tok.value[1:-1])
    if len(lo) != 1 or len(hi) != 1:
        raise GrammarError(
            f"Lark grammar: range ends must be single characters: {start_tok}..{end_tok}"
        )
    return ord(lo), ord(hi)


def _regex_lexemes(pattern: str, flags: int) -> Expr:
    """Lexemes of a regex terminal: non-empty s with ``re.match(pattern, s)`` spanning s."""
    try:
        from .regex import regex_to_expr
    except ImportError:  # pragma: no cover - only while the regex front-end is missing
        raise GrammarError(
            f"regex terminal {pattern!r} needs grammask.grammar.regex, which is not available"
        ) from None
    return regex_to_expr(pattern, flags, semantics="match")


# --------------------------------------------------------------------------- case folding


def _ignorecase_literal(text: str) -> Expr:
    """The strings ``re.fullmatch(re.escape(text), s, re.IGNORECASE)`` accepts."""
    parts = []
    for ch in text:
        variants = _case_variants(ch)
        parts.append(lit(ch) if len(variants) == 1 else char_ranges((c, c) for c in variants))
    return seq(parts)


@functools.lru_cache(maxsize=4096)
def _case_variants(ch: str) -> tuple[int, ...]:
    """Code points that ``re`` matches against ``ch`` under IGNORECASE: those with the same
    simple lowercase (the mapping ``re`` uses), plus ``re``'s extra cases (such as 's' and
    'ſ'); each candidate is confirmed with ``re`` itself."""
    import _sre

    groups, extra_cases = _case_groups()
    low = _sre.unicode_tolower(ord(ch))
    candidates = {ord(ch), low} | groups.get(low, set())
    for other in extra_cases.get(low, ()):
        candidates |= {other} | groups.get(other, set())
    pattern = re.compile(re.escape(ch), re.IGNORECASE)
    return tuple(sorted(c for c in candidates if pattern.fullmatch(chr(c))))


@functools.lru_cache(maxsize=1)
def _case_groups() -> tuple[dict[int, set], dict]:
    """Code points grouped by simple lowercase (about 0.1 s, once), and ``re``'s table of
    characters that are case-equal without sharing a lowercase."""
    import _sre

    groups: dict[int, set] = {}
    for cp in range(0x110000):
        low = _sre.unicode_tolower(cp)
        if low != cp:
            groups.setdefault(low, {low}).add(cp)
    try:
        from re._casefix import _EXTRA_CASES as extra  # Python >= 3.11
    except ImportError:  # pragma: no cover
        try:
            from sre_compile import _ignorecase_fixes as extra  # type: ignore
        except ImportError:
            extra = {}
    return groups, extra
