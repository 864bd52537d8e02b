"""Grammar IR -> one minimal byte DFA per rule -> the flat arrays the kernels read.

Rules that are not recursive and not too large are inlined into their callers, so that most
grammars become a handful of DFAs (a JSON Schema without recursion is often one DFA); the
rest stay rules, and their references become call edges that the Earley kernels follow.
After construction, rules that derive no string are removed (with the call edges that lead
to them), so every state the parser can reach leads to a sentence: the masks never allow a
token after which the grammar cannot be finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GrammarError
from ..grammar.fsm import Dfa, Nfa, determinize
from ..grammar.ir import (
    Alt,
    Automaton,
    ByteSet,
    CharSet,
    Expr,
    Grammar,
    Literal,
    Ref,
    Repeat,
    Seq,
    refs_of,
)
from ..mask_kernels.earley import F_ACCEPT, F_BYTES, F_CALLS, pack_grammar

#: A rule whose estimated automaton size is at most this is inlined wherever it is used.
INLINE_SMALL = 256
#: A rule used once is inlined up to this estimated size.
INLINE_ONCE = 50_000


@dataclass(frozen=True)
class RuleAutomata:
    """The compiled form of a grammar: per-rule DFAs numbered into one global state space."""

    rule_names: tuple[str, ...]  # rule index -> name
    start_rule: int
    blob: np.ndarray  # the packed int32 arrays (see mask_kernels.earley)
    n_states: int
    n_classes: int
    byte_class: np.ndarray  # uint8/int32[256]
    state_base: np.ndarray  # rule index -> first global state


def build_rule_automata(grammar: Grammar) -> RuleAutomata:
    """Compiles ``grammar`` into rule DFAs. Raises GrammarError for undefined rules, a grammar
    whose language is empty, or automata past the size limits."""
    rules = grammar.rules
    reachable = _reachable_rules(grammar)
    recursive = _recursive_rules(reachable, rules)
    keep = _choose_kept_rules(grammar, reachable, recursive)

    index = {name: i for i, name in enumerate(keep)}
    dfas: list[Dfa] = []
    for name in keep:
        nfa = Nfa()
        src, dst = nfa.state(), nfa.state()

        def call_symbol(ref_name: str):
            i = index.get(ref_name)
            return i if i is not None else rules[ref_name]

        try:
            nfa.build(rules[name], src, dst, call_symbol)
            dfas.append(determinize(nfa, src, {dst}).minimize())
        except GrammarError as exc:
            raise GrammarError(f"in rule {name!r}: {exc}") from None

    productive = _productive(dfas)
    start = index[grammar.start]
    if not productive[start]:
        raise GrammarError(
            f"the grammar's language is empty: start rule {grammar.start!r} derives no string"
        )
    dfas = [_drop_calls(d, productive) for d in dfas]
    # keep only rules still reachable from the start through live call edges
    live = _live_rules(dfas, start)
    renum = {old: new for new, old in enumerate(live)}
    names = tuple(keep[i] for i in live)
    dfas = [_renumber_calls(dfas[i], renum) for i in live]
    return _assemble(names, renum[start], dfas)


# --------------------------------------------------------------------------- rule analysis


def _reachable_rules(grammar: Grammar) -> list[str]:
    rules = grammar.rules
    order = [grammar.start]
    seen = {grammar.start}
    i = 0
    while i < len(order):
        name = order[i]
        i += 1
        for r in sorted(refs_of(rules[name])):
            if r not in rules:
                raise GrammarError(f"rule {name!r} refers to undefined rule {r!r}")
            if r not in seen:
                seen.add(r)
                order.append(r)
    return order


def _recursive_rules(names: list[str], rules) -> set[str]:
    """Rules that lie on a cycle of the reference graph (Tarjan's SCC, iterative)."""
    graph = {n: sorted(refs_of(rules[n])) for n in names}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: set[str] = set()
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, pi = work.pop()
            if pi == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succ = graph[v]
            if pi < len(succ):
                work.append((v, pi + 1))
                w = succ[pi]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph[v]:
                    out.update(comp)
    return out


def _choose_kept_rules(grammar: Grammar, reachable: list[str], recursive: set[str]) -> list[str]:
    rules = grammar.rules
    uses: dict[str, int] = {n: 0 for n in reachable}
    for n in reachable:
        _count_refs(rules[n], uses)
    inline: set[str] = set()
    sizes: dict[str, float] = {}

    def size_of(name: str) -> float:
        if name in sizes:
            return sizes[name]
        sizes[name] = 1.0  # provisional, guards recursion
        sizes[name] = _estimate(rules[name], lambda r: size_of(r) if r in inline else 1.0)
        return sizes[name]

    # decide callees before callers (post-order of the reference graph)
    for name in _post_order(grammar.start, rules):
        if name == grammar.start or name in recursive:
            continue
        sizes.pop(name, None)
        s = size_of(name)
        if s <= INLINE_SMALL or (uses[name] <= 1 and s <= INLINE_ONCE):
            inline.add(name)
    return [n for n in reachable if n not in inline]


def _post_order(start: str, rules) -> list[str]:
    order: list[str] = []
    seen = {start}
    work = [(start, iter(sorted(refs_of(rules[start]))))]
    while work:
        name, it = work[-1]
        for r in it:
            if r not in seen:
                seen.add(r)
                work.append((r, iter(sorted(refs_of(rules[r])))))
                break
        else:
            work.pop()
            order.append(name)
    return order


def _count_refs(e: Expr, uses: dict[str, int]) -> None:
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Ref):
            uses[x.name] = uses.get(x.name, 0) + 1
        elif isinstance(x, (Seq, Alt)):
            stack.extend(x.items)
        elif isinstance(x, Repeat):
            stack.append(x.item)


def _estimate(e: Expr, ref_size) -> float:
    """A rough count of the NFA states ``e`` expands to."""
    if isinstance(e, Literal):
        return len(e.data)
    if isinstance(e, ByteSet):
        return 1
    if isinstance(e, CharSet):
        return 1 + len(e.ranges)
    if isinstance(e, (Seq, Alt)):
        return 1 + sum(_estimate(i, ref_size) for i in e.items)
    if isinstance(e, Repeat):
        inner = _estimate(e.item, ref_size)
        times = e.max if e.max is not None else e.min + 1
        return 1 + inner * max(times, 1)
    if isinstance(e, Ref):
        return ref_size(e.name)
    if isinstance(e, Automaton):
        return len(e.edges)
    return 1


def _productive(dfas: list[Dfa]) -> list[bool]:
    """Which rules derive at least one string (fixpoint over the DFAs)."""
    n = len(dfas)
    prod = [False] * n
    changed = True
    while changed:
        changed = False
        for r, d in enumerate(dfas):
            if prod[r]:
                continue
            seen = {d.start}
            stack = [d.start]
            found = False
            while stack and not found:
                s = stack.pop()
                if d.accepting[s]:
                    found = True
                    break
                nxt = [t for _, _, t in d.edges[s]]
                nxt += [t for sym, t in d.calls[s] if prod[sym]]
                for t in nxt:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
            if found:
                prod[r] = changed = True
    return prod


def _drop_calls(d: Dfa, productive: list[bool]) -> Dfa:
    if all(productive[sym] for calls in d.calls for sym, _ in calls):
        return d
    calls = [tuple((sym, t) for sym, t in c if productive[sym]) for c in d.calls]
    return Dfa(d.start, d.edges, d.accepting, calls).minimize()


def _live_rules(dfas: list[Dfa], start: int) -> list[int]:
    seen = {start}
    order = [start]
    i = 0
    while i < len(order):
        d = dfas[order[i]]
        i += 1
        for calls in d.calls:
            for sym, _ in calls:
                if sym not in seen:
                    seen.add(sym)
                    order.append(sym)
    return sorted(order)


def _renumber_calls(d: Dfa, renum: dict[int, int]) -> Dfa:
    if not any(d.calls):
        return d
    calls = [tuple(sorted((renum[sym], t) for sym, t in c)) for c in d.calls]
    return Dfa(d.start, d.edges, d.accepting, calls)


def _nullable(dfas: list[Dfa]) -> list[bool]:
    n = len(dfas)
    null = [False] * n
    changed = True
    while changed:
        changed = False
        for r, d in enumerate(dfas):
            if null[r]:
                continue
            seen = {d.start}
            stack = [d.start]
            while stack:
                s = stack.pop()
                if d.accepting[s]:
                    null[r] = changed = True
                    break
                for sym, t in d.calls[s]:
                    if null[sym] and t not in seen:
                        seen.add(t)
                        stack.append(t)
    return null


# --------------------------------------------------------------------------- assembly


def _assemble(names: tuple[str, ...], start_rule: int, dfas: list[Dfa]) -> RuleAutomata:
    n_rules = len(dfas)
    base = np.zeros(n_rules + 1, dtype=np.int64)
    for r, d in enumerate(dfas):
        base[r + 1] = base[r] + d.n_states
    n_states = int(base[-1])
    if n_states >= 2**31 - 1:
        raise GrammarError("grammar too large: more than 2**31 automaton states")

    # byte classes: bytes that every state treats alike share a column
    cuts = {0, 256}
    for d in dfas:
        for edges in d.edges:
            for lo, hi, _ in edges:
                cuts.add(lo)
                cuts.add(hi + 1)
    bounds = sorted(cuts)
    n_iv = len(bounds) - 1
    iv_of_byte = np.zeros(256, dtype=np.int64)
    for i in range(n_iv):
        iv_of_byte[bounds[i]:bounds[i + 1]] = i
    table = np.full((n_states, n_iv), -1, dtype=np.int32)
    flags = np.zeros(n_states, dtype=np.int32)
    rule_of = np.zeros(n_states, dtype=np.int32)
    call_ptr = np.zeros(n_states + 1, dtype=np.int32)
    call_rule: list[int] = []
    call_dst: list[int] = []
    for r, d in enumerate(dfas):
        b = int(base[r])
        for s in range(d.n_states):
            g = b + s
            rule_of[g] = r
            f = F_ACCEPT if d.accepting[s] else 0
            edges = d.edges[s]
            if edges:
                f |= F_BYTES
                row = table[g]
                for lo, hi, t in edges:
                    row[iv_of_byte[lo]:iv_of_byte[hi] + 1] = b + t
            calls = d.calls[s]
            if calls:
                f |= F_CALLS
                for sym, t in calls:
                    call_rule.append(sym)
                    call_dst.append(b + t)
            call_ptr[g + 1] = len(call_rule)
            flags[g] = f
    # merge intervals whose columns are identical
    if n_states:
        _, col_class, = np.unique(table.T, axis=0, return_inverse=True)[:2]
        col_class = np.asarray(col_class).reshape(-1)
        first_of: dict[int, int] = {}
        for iv in range(n_iv):
            first_of.setdefault(int(col_class[iv]), iv)
        # renumber classes in order of first appearance for determinism
        order = {c: k for k, c in enumerate(sorted(first_of, key=first_of.get))}
        cls_of_iv = np.array([order[int(c)] for c in col_class], dtype=np.int32)
        n_classes = len(order)
        trans = np.full((n_states, n_classes), -1, dtype=np.int32)
        for c, iv in first_of.items():
            trans[:, order[c]] = table[:, iv]
    else:
        cls_of_iv = np.zeros(n_iv, dtype=np.int32)
        n_classes = 1
        trans = np.full((0, 1), -1, dtype=np.int32)
    byte_class = cls_of_iv[iv_of_byte].astype(np.int32)
    rule_start = np.array([int(base[r]) + d.start for r, d in enumerate(dfas)], dtype=np.int32)
    nullable = np.array(_nullable(dfas), dtype=np.int32)
    blob = pack_grammar(
        byte_class,
        trans,
        flags,
        rule_of,
        call_ptr,
        np.array(call_rule, dtype=np.int32),
        np.array(call_dst, dtype=np.int32),
        rule_start,
        nullable,
        start_rule,
    )
    return RuleAutomata(
        rule_names=names,
        start_rule=start_rule,
        blob=blob,
        n_states=n_states,
        n_classes=n_classes,
        byte_class=byte_class,
        state_base=base.astype(np.int32),
    )
