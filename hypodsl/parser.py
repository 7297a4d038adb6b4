"""The parser: `.hyp` text to a syntax tree. The only module that imports lark.

The grammar lives in `grammar/hyp.lark` (shipped in the wheel as `hypodsl/grammar/hyp.lark`).
Lark's exceptions stop at this boundary: they are re-raised as `HypSyntaxError` with a position
and a message in words ("expected a comparison operator after `accuracy`").
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

from hypodsl import syntax as s
from hypodsl.errors import HypSyntaxError, SourcePosition

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
    "$END": "the end of the file",
}


def grammar_path() -> Path:
    for place in _GRAMMAR_PLACES:
        if place.exists():
            return place
    raise FileNotFoundError(f"hyp.lark not found in {', '.join(map(str, _GRAMMAR_PLACES))}")


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
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, uri) from None
    return _ToSyntax(uri).transform(tree)


def parse_file(path: Path) -> s.Spec:
    try:
        text = path.read_text()
    except OSError as e:
        raise HypSyntaxError(f"cannot read {path}: {e.strerror}") from None
    return parse(text, str(path))


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


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Lark tree to frozen syntax nodes, keeping every node's position."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def _name(self, tok: Token) -> s.Name:
        return s.Name(_tok_pos(self.uri, tok), str(tok))

    def start(self, meta: Meta, children: list) -> s.Spec:
        pos = _pos(self.uri, meta) if not meta.empty else SourcePosition(self.uri, 1, 1, 1, 1)
        return s.Spec(pos, tuple(children))

    def study(self, meta: Meta, children: list) -> s.Study:
        return s.Study(_pos(self.uri, meta), _string(children[0]))

    def run_decl(self, meta: Meta, children: list) -> s.RunDecl:
        return s.RunDecl(_pos(self.uri, meta), self._name(children[0]), _string(children[1]))

    def probe_decl(self, meta: Meta, children: list) -> s.ProbeDecl:
        name, split, n, *seed = children
        return s.ProbeDecl(
            _pos(self.uri, meta),
            self._name(name),
            self._name(split),
            int(n),
            seed[0] if seed else None,
        )

    def probe_seed(self, meta: Meta, children: list) -> int:
        return int(children[0])

    def confidence_decl(self, meta: Meta, children: list) -> s.ConfidenceDecl:
        return s.ConfidenceDecl(_pos(self.uri, meta), float(children[0]))

    def claim(self, meta: Meta, children: list) -> s.Claim:
        name, text, *rest = children
        expect = rest.pop(0) if rest and isinstance(rest[0], str) else None
        return s.Claim(_pos(self.uri, meta), self._name(name), _string(text), expect, tuple(rest))

    def expectation(self, meta: Meta, children: list) -> str:
        return str(children[0])

    def prediction(self, meta: Meta, children: list) -> s.Prediction:
        step, probe, comparison = children
        return s.Prediction(_pos(self.uri, meta), step, self._name(probe), comparison)

    def step_number(self, meta: Meta, children: list) -> s.Step:
        return s.Step(_pos(self.uri, meta), "number", int(children[0]))

    def step_final(self, meta: Meta, children: list) -> s.Step:
        return s.Step(_pos(self.uri, meta), "final")

    def step_first(self, meta: Meta, children: list) -> s.Step:
        return s.Step(_pos(self.uri, meta), "first")

    def comparison(self, meta: Meta, children: list) -> s.Comparison:
        left, op, right = children
        return s.Comparison(_pos(self.uri, meta), left, str(op), right)  # type: ignore[arg-type]

    def quantity(self, meta: Meta, children: list) -> s.Quantity:
        return s.Quantity(_pos(self.uri, meta), self._name(children[0]))

    def number(self, meta: Meta, children: list) -> s.Number:
        return s.Number(_pos(self.uri, meta), float(children[0]))

    def add(self, meta: Meta, children: list) -> s.BinOp:
        return s.BinOp(_pos(self.uri, meta), "+", children[0], children[1])

    def subtract(self, meta: Meta, children: list) -> s.BinOp:
        return s.BinOp(_pos(self.uri, meta), "-", children[0], children[1])


def _string(tok: Token) -> str:
    return str(ast.literal_eval(str(tok)))
