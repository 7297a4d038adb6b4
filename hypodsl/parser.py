"""The parser: `.hyp` text to a syntax tree. The only module that imports lark.

The grammar lives in `grammar/hyp.lark` (shipped in the wheel as `hypodsl/grammar/hyp.lark`).
Lark's exceptions stop at this boundary: they are re-raised as `HypSyntaxError` with a position
and a message in words ("expected a comparison operator after `accuracy`").
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.tree import Meta

from hypodsl import syntax as s
from hypodsl.errors import HypSyntaxError, SourcePosition, collector_paused
from hypodsl.parser_features import FeatureRules
from hypodsl.sources import read_spec_text

_HERE = Path(__file__).resolve().parent
_GRAMMAR_PLACES = (_HERE / "grammar" / "hyp.lark", _HERE.parent / "grammar" / "hyp.lark")

# What each terminal means, in the words an error message uses.
TERMINAL_WORDS = {
    "COMPARATOR": "a comparison operator (<, <=, >, >=)",
    "NAME": "a name",
    "STRING": 'a quoted string ("...")',
    "INT": "a whole number",
    "NUMBER": "a number",
    "VERDICT": "a verdict (supported, negative, unsupported)",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "PLUS": "`+`",
    "MINUS": "`-`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "VBAR": "`|`",
    "COMMA": "`,`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "HEAD": "a head (`L1.H2`)",
    "HEAD_INPUT": "a head input (`L1.H2.q`, `.k` or `.v`)",
    "MLP": "an MLP (`L2.mlp`)",
    "FEATURE": "a feature (`l2.f27`) or error term (`l2.error`)",
    "CORRECTION": "a correction (holm, bh, none)",
    "AGGREGATE": "an aggregation (all, mean, trend)",
    "BIRTH_RELATION": "`before` or `after`",
    "$END": "the end of the file",
}


# Bounds that keep every later stage (compiler, formatter, plan JSON, judge) out of deep
# recursion and out of numbers a float cannot hold. Sums are flat and need no bound.
MAX_NESTING = 64  # nested `*` `/` `-x` `|x|` and parenthesised sums in one expression
MAX_DIGITS = 18  # a whole number (step, size, seed, index) stays below 10**18
_NESTING_RULES = {"sum", "mul", "div", "neg", "abs"}


def grammar_path() -> Path:
    for place in _GRAMMAR_PLACES:
        if place.exists():
            return place
    raise FileNotFoundError(f"hyp.lark not found in {', '.join(map(str, _GRAMMAR_PLACES))}")


@lru_cache(maxsize=1)
def reserved_words() -> frozenset[str]:
    """The grammar's keywords (`first`, `over`, ...): a role or split cannot be named so."""
    return frozenset(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', grammar_path().read_text()))


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_path().read_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse(text: str, uri: str = "<string>") -> s.Spec:
    """Parse one file's text; raise `HypSyntaxError` naming `uri:line:col`."""
    with collector_paused():
        return _parse(text, uri)


def _parse(text: str, uri: str) -> s.Spec:
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, uri) from None
    _check_nesting(tree, uri)
    try:
        spec = _ToSyntax(uri).transform(tree)
    except VisitError as e:  # an error raised while building the tree, e.g. a bad escape
        if isinstance(e.orig_exc, HypSyntaxError):
            raise e.orig_exc from None
        raise
    return s.Spec(spec.pos, spec.statements, scan_comments(text, uri))


def parse_file(path: Path) -> s.Spec:
    try:
        text = read_spec_text(path)
    except OSError as e:
        raise HypSyntaxError(f"cannot read {path}: {e.strerror}") from None
    return parse(text, str(path))


def _check_nesting(tree: Tree, uri: str) -> None:
    """Refuse expressions nested deeper than MAX_NESTING, before anything recurses over them."""
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        depth += node.data in _NESTING_RULES
        if depth > MAX_NESTING:
            raise HypSyntaxError(
                f"expression nested more than {MAX_NESTING} deep (products, unary minus, `|x|` "
                "and bracketed sums); write it as several predictions",
                _pos(uri, node.meta),
            )
        stack.extend((c, depth) for c in node.children if isinstance(c, Tree))


def _whole(tok: Token, uri: str, digits: str | None = None) -> int:
    """A whole number from the source, refused past MAX_DIGITS digits."""
    digits = str(tok) if digits is None else digits
    if len(digits) > MAX_DIGITS:
        shown = digits if len(digits) <= 24 else f"{digits[:12]}…{digits[-4:]}"
        raise HypSyntaxError(
            f"whole number `{shown}` has {len(digits)} digits; at most {MAX_DIGITS}",
            _tok_pos(uri, tok),
        )
    return int(digits)


def _finite(tok: Token, uri: str) -> float:
    """A number from the source, refused when a float cannot hold it (`1e400`)."""
    value = float(str(tok))
    if not math.isfinite(value):
        shown = str(tok) if len(str(tok)) <= 24 else f"{str(tok)[:12]}…"
        raise HypSyntaxError(
            f"number `{shown}` is too large (a float holds at most about 1.8e308)",
            _tok_pos(uri, tok),
        )
    return value


def _syntax_error(e: UnexpectedInput, text: str, uri: str) -> HypSyntaxError:
    line, column = max(1, e.line), max(1, e.column)
    width = 1
    if isinstance(e, UnexpectedToken) and e.token.type == "$END":
        line, column = _end_position(text)
    elif isinstance(e, UnexpectedToken):
        width = max(1, len(str(e.token)))
    pos = SourcePosition(uri, line, column, line, column + width)
    offset = _offset(text, line, column)
    after = _previous_lexeme(text, offset)
    where = f" after `{after}`" if after else ""
    if isinstance(e, UnexpectedCharacters):
        char = text[offset] if offset < len(text) else ""
        return HypSyntaxError(f"unexpected character `{char}`{where}", pos)
    expected = _describe_expected(_acceptable(e))
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        return HypSyntaxError(f"the file ends too early: expected {expected}{where}", pos)
    assert isinstance(e, UnexpectedToken)
    return HypSyntaxError(f"expected {expected}{where}, found `{e.token}`", pos)


def _acceptable(e: UnexpectedInput) -> set[str]:
    """Terminals the parser would really accept here. LALR merges lookaheads, so the
    `expected` set can name tokens that would fail one step later; the interactive parser
    tries each one."""
    parser = getattr(e, "interactive_parser", None)
    if parser is not None:
        try:
            return set(parser.accepts())
        except Exception:
            pass
    return set(getattr(e, "expected", set()) or set())


def _describe_expected(terminals: set[str]) -> str:
    words = sorted({TERMINAL_WORDS[t] if t in TERMINAL_WORDS else _keyword(t) for t in terminals})
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _keyword(terminal: str) -> str:
    try:
        pattern = _lark().get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    return f"`{pattern.value}`" if pattern.type == "str" else terminal.lower()


def _offset(text: str, line: int, column: int) -> int:
    lines = text.splitlines(keepends=True)
    return sum(len(x) for x in lines[: line - 1]) + column - 1


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    return line, len(stripped.split("\n")[-1]) + 1


def _previous_lexeme(text: str, offset: int) -> str | None:
    """The last word or symbol before `offset`, skipping whitespace and comments."""
    before = re.sub(r"#[^\n]*", "", text[:offset]).rstrip()
    match = re.search(r'("[^"\n]*"|[A-Za-z_0-9.]+|[^\sA-Za-z_0-9])$', before)
    return match.group(1) if match else None


def _pos(uri: str, meta: Meta) -> SourcePosition:
    return SourcePosition(uri, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_pos(uri: str, tok: Token) -> SourcePosition:
    return SourcePosition(
        uri, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0
    )


_COMPONENT = re.compile(r"L(\d+)\.(?:H(\d+)(?:\.([qkv]))?|mlp)")


def _component(tok: Token, uri: str) -> tuple[int, int, str | None]:
    """(layer, head, input) of `L1.H2`, `L1.H2.k` or `L2.mlp` (head -1 for an MLP)."""
    m = _COMPONENT.fullmatch(str(tok))
    assert m is not None, tok
    head = _whole(tok, uri, m.group(2)) if m.group(2) else -1
    return _whole(tok, uri, m.group(1)), head, m.group(3)


def scan_comments(text: str, uri: str) -> tuple[s.Comment, ...]:
    """Every `#` comment outside a string, with its position."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        in_string = escaped = False
        for col, ch in enumerate(line):
            if in_string:
                if escaped:  # the character after a backslash, a quote included
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "#":
                pos = SourcePosition(uri, number, col + 1, number, len(line) + 1)
                own_line = not line[:col].strip()
                found.append(s.Comment(pos, line[col:].rstrip(), own_line))
                break
    return tuple(found)


@v_args(meta=True)
class _ToSyntax(FeatureRules):
    """Lark tree to frozen syntax nodes, keeping every node's position."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def _p(self, meta: Meta) -> SourcePosition:
        return _pos(self.uri, meta)

    def _name(self, tok: Token) -> s.Name:
        return s.Name(_tok_pos(self.uri, tok), str(tok))

    def _int(self, tok: Token) -> int:
        return _whole(tok, self.uri)

    def _str(self, tok: Token) -> str:
        return _string(tok, self.uri)

    def _float(self, tok: Token) -> float:
        return _finite(tok, self.uri)

    # statements
    def start(self, meta: Meta, children: list) -> s.Spec:
        pos = self._p(meta) if not meta.empty else SourcePosition(self.uri, 1, 1, 1, 1)
        return s.Spec(pos, tuple(children))

    def study(self, meta: Meta, c: list) -> s.Study:
        return s.Study(self._p(meta), _string(c[0], self.uri))

    def run_decl(self, meta: Meta, c: list) -> s.RunDecl:
        return s.RunDecl(self._p(meta), self._name(c[0]), _string(c[1], self.uri))

    def runs_decl(self, meta: Meta, c: list) -> s.RunsDecl:
        return s.RunsDecl(self._p(meta), self._name(c[0]), _string(c[1], self.uri))

    def import_decl(self, meta: Meta, c: list) -> s.ImportDecl:
        return s.ImportDecl(self._p(meta), _string(c[0], self.uri))

    def probe_decl(self, meta: Meta, c: list) -> s.ProbeDecl:
        name, split, n, *seed = c
        return s.ProbeDecl(
            self._p(meta),
            self._name(name),
            self._name(split),
            _whole(n, self.uri),
            seed[0] if seed else None,
        )

    def probe_seed(self, meta: Meta, c: list) -> int:
        return _whole(c[0], self.uri)

    def confidence_decl(self, meta: Meta, c: list) -> s.ConfidenceDecl:
        return s.ConfidenceDecl(self._p(meta), _finite(c[0], self.uri))

    def correction_decl(self, meta: Meta, c: list) -> s.CorrectionDecl:
        return s.CorrectionDecl(self._p(meta), str(c[0]))  # type: ignore[arg-type]

    def mark_decl(self, meta: Meta, c: list) -> s.MarkDecl:
        return s.MarkDecl(self._p(meta), tuple(self._name(x) for x in c))

    def window_decl(self, meta: Meta, c: list) -> s.WindowDecl:
        return s.WindowDecl(self._p(meta), self._name(c[0]), c[1])

    def window_fixed(self, meta: Meta, c: list) -> s.WindowRange:
        return s.WindowRange(self._p(meta), _whole(c[0], self.uri), _whole(c[1], self.uri))

    def window_from(self, meta: Meta, c: list) -> s.WindowRange:
        return s.WindowRange(self._p(meta), _whole(c[0], self.uri), None)

    def window_until(self, meta: Meta, c: list) -> s.WindowRange:
        return s.WindowRange(self._p(meta), None, _whole(c[0], self.uri))

    def window_before_birth(self, meta: Meta, c: list) -> s.WindowBirth:
        return s.WindowBirth(self._p(meta), "before", c[0])

    def window_after_birth(self, meta: Meta, c: list) -> s.WindowBirth:
        return s.WindowBirth(self._p(meta), "after", c[0])

    def path_decl(self, meta: Meta, c: list) -> s.PathDecl:
        return s.PathDecl(self._p(meta), self._name(c[0]), c[1])

    def circuit_decl(self, meta: Meta, c: list) -> s.CircuitDecl:
        return s.CircuitDecl(self._p(meta), self._name(c[0]), tuple(self._name(t) for t in c[1:]))

    # paths
    def path(self, meta: Meta, c: list) -> s.PathExpr:
        return s.PathExpr(self._p(meta), tuple(c))

    def embed_node(self, meta: Meta, c: list) -> s.Embed:
        return s.Embed(self._p(meta))

    def pos_node(self, meta: Meta, c: list) -> s.Pos:
        return s.Pos(self._p(meta))

    def unembed_node(self, meta: Meta, c: list) -> s.Unembed:
        return s.Unembed(self._p(meta))

    def head_node(self, meta: Meta, c: list) -> s.Head:
        layer, head, _ = _component(c[0], self.uri)
        return s.Head(self._p(meta), layer, head)

    def head_input_node(self, meta: Meta, c: list) -> s.HeadInput:
        layer, head, inp = _component(c[0], self.uri)
        return s.HeadInput(self._p(meta), layer, head, inp)  # type: ignore[arg-type]

    def head_qk_node(self, meta: Meta, c: list) -> s.HeadQK:
        layer, head, _ = _component(c[0], self.uri)
        return s.HeadQK(self._p(meta), layer, head, self._name(c[1]), self._name(c[2]))

    def mlp_node(self, meta: Meta, c: list) -> s.Mlp:
        return s.Mlp(self._p(meta), _component(c[0], self.uri)[0])

    def neurons_node(self, meta: Meta, c: list) -> s.Neurons:
        return s.Neurons(
            self._p(meta), _component(c[0], self.uri)[0], tuple(_whole(t, self.uri) for t in c[1:])
        )

    # claims
    def claim(self, meta: Meta, c: list) -> s.Claim:
        name, text, *options, (pending, reason, predictions) = c
        found = dict(options)  # each option once: a repeat keeps the last (the compiler warns)
        return s.Claim(
            self._p(meta), self._name(name), _string(text, self.uri), found.get("expect"),
            pending, predictions, "exploratory" in found, found.get("prior"),
            tuple(k for k, _ in options), reason,
        )  # fmt: skip

    def expectation(self, meta: Meta, c: list) -> tuple[str, str]:
        return "expect", str(c[0])

    def exploratory(self, meta: Meta, c: list) -> tuple[str, bool]:
        return "exploratory", True

    def prior(self, meta: Meta, c: list) -> tuple[str, str]:
        return "prior", _string(c[0], self.uri)

    def claim_items(self, meta: Meta, c: list) -> tuple[bool, None, tuple]:
        return False, None, tuple(c)

    def claim_pending(self, meta: Meta, c: list) -> tuple[bool, str | None, tuple]:
        """`pending`, or `pending "why"` with a reason that is not blank."""
        if not c:
            return True, None, ()
        reason = _string(c[0], self.uri)
        if not reason.strip():
            raise HypSyntaxError("a pending claim's reason is empty", _tok_pos(self.uri, c[0]))
        return True, reason, ()

    def timed_prediction(self, meta: Meta, c: list) -> s.TimedPrediction:
        when, *rest = c
        probe = rest.pop(0) if len(rest) == 2 else None
        return s.TimedPrediction(self._p(meta), when, probe, rest[0])

    def probe_ref(self, meta: Meta, c: list) -> s.Name:
        return self._name(c[0])

    def when_at(self, meta: Meta, c: list) -> s.At:
        return s.At(self._p(meta), c[0])

    def when_over(self, meta: Meta, c: list) -> s.Over:
        return s.Over(self._p(meta), self._name(c[0]), str(c[1]))  # type: ignore[arg-type]

    def step_number(self, meta: Meta, c: list) -> s.Step:
        return s.Step(self._p(meta), "number", _whole(c[0], self.uri))

    def step_final(self, meta: Meta, c: list) -> s.Step:
        return s.Step(self._p(meta), "final")

    def step_first(self, meta: Meta, c: list) -> s.Step:
        return s.Step(self._p(meta), "first")

    def birth_order(self, meta: Meta, c: list) -> s.BirthOrder:
        probe = c[3] if len(c) == 4 else None
        return s.BirthOrder(self._p(meta), c[0], str(c[1]), c[2], probe)  # type: ignore[arg-type]

    def birth(self, meta: Meta, c: list) -> s.Birth:
        return s.Birth(self._p(meta), c[0], *c[1:])

    def sustained_crossing(self, meta: Meta, c: list) -> str:
        return "sustained"

    def first_crossing(self, meta: Meta, c: list) -> str:
        return "first"

    # expressions
    def comparison(self, meta: Meta, c: list) -> s.Comparison:
        return s.Comparison(self._p(meta), c[0], str(c[1]), c[2])  # type: ignore[arg-type]

    def _binary(self, op: str, meta: Meta, c: list) -> s.BinOp:
        return s.BinOp(self._p(meta), op, c[0], c[1])  # type: ignore[arg-type]

    def sum(self, meta: Meta, c: list) -> s.Sum:
        ops: tuple[Any, ...] = tuple(str(op) for op in c[1::2])  # "+" or "-", by the grammar
        return s.Sum(self._p(meta), tuple(c[0::2]), ops)

    def mul(self, meta: Meta, c: list) -> s.BinOp:
        return self._binary("*", meta, c)

    def div(self, meta: Meta, c: list) -> s.BinOp:
        return self._binary("/", meta, c)

    def neg(self, meta: Meta, c: list) -> s.Neg:
        return s.Neg(self._p(meta), c[0])

    def abs(self, meta: Meta, c: list) -> s.Abs:
        return s.Abs(self._p(meta), c[0])

    def number(self, meta: Meta, c: list) -> s.Number:
        return s.Number(self._p(meta), _finite(c[0], self.uri))

    def term(self, meta: Meta, c: list) -> s.Term:
        call, *rest = c
        probe = rest.pop(0) if rest and isinstance(rest[0], s.Name) else None
        interventions = rest[0] if rest else ()
        return s.Term(self._p(meta), call, probe, interventions)

    def call_bare(self, meta: Meta, c: list) -> s.Call:
        return s.Call(self._p(meta), self._name(c[0]), None)

    def call_args(self, meta: Meta, c: list) -> s.Call:
        args = c[1] if len(c) > 1 and c[1] is not None else ()
        return s.Call(self._p(meta), self._name(c[0]), args)

    def interventions(self, meta: Meta, c: list) -> tuple[s.Call, ...]:
        return tuple(c)

    def args(self, meta: Meta, c: list) -> tuple[s.Arg, ...]:
        return tuple(a if isinstance(a, s.Arg) else s.Arg(a.pos, None, a) for a in c)

    def keyword_arg(self, meta: Meta, c: list) -> s.Arg:
        return s.Arg(self._p(meta), self._name(c[0]), c[1])

    def path_value(self, meta: Meta, c: list) -> s.PathExpr:
        return c[0]

    def node_value(self, meta: Meta, c: list) -> s.PathNode:
        return c[0]

    def number_value(self, meta: Meta, c: list) -> s.Number:
        return s.Number(self._p(meta), _finite(c[0], self.uri))

    def final_value(self, meta: Meta, c: list) -> s.StepValue:
        return s.StepValue(self._p(meta), "final")

    def first_value(self, meta: Meta, c: list) -> s.StepValue:
        return s.StepValue(self._p(meta), "first")


_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _string(tok: Token, uri: str = "<string>") -> str:
    r"""The value of a string literal; escapes: \\ \" \n \r \t \xNN \uNNNN \UNNNNNNNN."""

    def decode(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2) or m.group(3)
        if code:
            value = int(code, 16)
            if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
                return chr(value)
        elif m.group(4) in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[m.group(4)]
        col = (tok.column or 1) + m.start()
        pos = SourcePosition(uri, tok.line or 1, col, tok.line or 1, col + len(m.group(0)))
        raise HypSyntaxError(f"unknown escape `{m.group(0)}` in a string", pos)

    return _ESCAPE.sub(decode, str(tok)[1:-1])
