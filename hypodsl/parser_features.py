"""The parser's rules for feature bases, families and selections (a mixin of the transformer
in `hypodsl.parser`, kept apart so each module stays readable)."""

from __future__ import annotations

from lark import Token, Transformer, v_args
from lark.tree import Meta

from hypodsl import syntax as s
from hypodsl.errors import SourcePosition


@v_args(meta=True)
class FeatureRules(Transformer):
    """Transformer methods for `basis`, `family`, `select` and feature path nodes."""

    uri: str

    def _p(self, meta: Meta) -> SourcePosition:  # provided by the transformer
        raise NotImplementedError

    def _name(self, tok: Token) -> s.Name:
        raise NotImplementedError

    def _int(self, tok: Token) -> int:
        raise NotImplementedError

    def _str(self, tok: Token) -> str:
        raise NotImplementedError

    def _float(self, tok: Token) -> float:
        raise NotImplementedError

    def feature_node(self, meta: Meta, c: list) -> s.Feature:
        basis, _, member = str(c[0]).rpartition(".")
        pos = self._p(meta)
        name = s.Name(
            SourcePosition(pos.uri, pos.line, pos.column, pos.line, pos.column + len(basis)), basis
        )
        if member == "error":
            return s.Feature(pos, name, None)
        digits = Token("INT", member[1:], line=c[0].line, column=c[0].column,
                       end_line=c[0].end_line, end_column=c[0].end_column)  # fmt: skip
        return s.Feature(pos, name, self._int(digits))

    def feature_set_node(self, meta: Meta, c: list) -> s.FeatureSet:
        return s.FeatureSet(self._p(meta), self._name(c[0]), tuple(self._int(t) for t in c[1:]))

    def name_node(self, meta: Meta, c: list) -> s.Name:
        return self._name(c[0])

    def call_value(self, meta: Meta, c: list) -> s.Call:
        args = c[1] if len(c) > 1 and c[1] is not None else ()
        return s.Call(self._p(meta), self._name(c[0]), args)

    def basis_decl(self, meta: Meta, c: list) -> s.BasisDecl:
        site = next((x[1] for x in c[2:] if x[0] == "site"), None)
        pin = next((x[1] for x in c[2:] if x[0] == "sha256"), None)
        return s.BasisDecl(self._p(meta), self._name(c[0]), self._str(c[1]), site, pin)

    def basis_site(self, meta: Meta, c: list) -> tuple[str, str]:
        return "site", self._str(c[0])

    def basis_pin(self, meta: Meta, c: list) -> tuple[str, str]:
        return "sha256", self._str(c[0])

    def family_decl(self, meta: Meta, c: list) -> s.FamilyDecl:
        return s.FamilyDecl(self._p(meta), self._name(c[0]), c[1])

    def select_decl(self, meta: Meta, c: list) -> s.SelectDecl:
        name, units, (criteria, top, by), window, probe = c
        return s.SelectDecl(
            self._p(meta), self._name(name), units, criteria, top, by, window, self._name(probe)
        )

    def neuron_units(self, meta: Meta, c: list) -> s.Mlp:
        layer = str(c[0]).split(".")[0][1:]
        tok = Token("INT", layer, line=c[0].line, column=c[0].column + 1,
                    end_line=c[0].end_line, end_column=c[0].column + 1 + len(layer))  # fmt: skip
        return s.Mlp(self._p(meta), self._int(tok))

    def feature_units(self, meta: Meta, c: list) -> s.Name:
        return self._name(c[0])

    def layer_head_units(self, meta: Meta, c: list) -> s.HeadUnits:
        return s.HeadUnits(self._p(meta), self._name(c[0]))

    def all_head_units(self, meta: Meta, c: list) -> s.HeadUnits:
        return s.HeadUnits(self._p(meta), None)

    def select_where(self, meta: Meta, c: list) -> tuple[tuple[s.Criterion, ...], None, None]:
        return tuple(c), None, None

    def select_top(self, meta: Meta, c: list) -> tuple[tuple[()], int, s.Call]:
        return (), self._int(c[0]), c[1]

    def criterion(self, meta: Meta, c: list) -> s.Criterion:
        return s.Criterion(self._p(meta), c[0], str(c[1]), c[2])  # type: ignore[arg-type]

    def signed_number(self, meta: Meta, c: list) -> float:
        value = self._float(c[-1])
        return -value if len(c) == 1 and self._negative(meta, c[-1]) else value

    @staticmethod
    def _negative(meta: Meta, tok: Token) -> bool:
        return (tok.column or 0) > meta.column  # a `-` came before the number

    def select_window_name(self, meta: Meta, c: list) -> s.Name:
        return self._name(c[0])

    def select_window_range(self, meta: Meta, c: list) -> s.WindowRange:
        return s.WindowRange(self._p(meta), self._int(c[0]), self._int(c[1]))
