"""Semantic checks and compilation: syntax tree (+ optional run signature) to `Plan`.

Every problem in a file is collected before anything is raised, so one run of `hypo check`
reports them all, each at its `file:line:col`, with a suggestion when a known name is close.
The signature is the plain-JSON `signature.json` a training run writes; without one, checks
that need it (splits, checkpoint steps) are skipped.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from hypodsl import plan as p
from hypodsl import syntax as s
from hypodsl.errors import HypValidationError, MultipleErrors, SourcePosition


def suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _ref(pos: SourcePosition) -> p.SourceRef:
    return p.SourceRef(uri=pos.uri, line=pos.line, column=pos.column)


class _Compiler:
    def __init__(self, spec: s.Spec, text: str, signature: dict[str, Any] | None) -> None:
        self.spec, self.lines, self.signature = spec, text.splitlines(), signature
        self.errors: list[HypValidationError] = []
        self.probes: dict[str, p.Probe] = {}

    def error(self, message: str, pos: SourcePosition) -> None:
        self.errors.append(HypValidationError(message, pos))

    def compile(self) -> p.Plan:
        study, run, confidence = None, None, 0.95
        claims: dict[str, p.ClaimPlan] = {}
        for st in self.spec.statements:
            if isinstance(st, s.Study):
                if study is not None:
                    self.error("a spec has one `study` line; this is a second", st.pos)
                study = st.title
            elif isinstance(st, s.RunDecl):
                if run is not None:
                    self.error(f"run `{run.name}` is already declared; one run per spec", st.pos)
                run = p.RunRef(name=st.name.text, path=st.path)
            elif isinstance(st, s.ConfidenceDecl):
                if not 0.5 <= st.level < 1:
                    self.error(f"confidence must be in [0.5, 1), not {st.level:g}", st.pos)
                confidence = st.level
            elif isinstance(st, s.ProbeDecl):
                self.declare_probe(st)
            elif isinstance(st, s.Claim):
                if st.name.text in claims:
                    self.error(f"claim `{st.name.text}` is declared twice", st.name.pos)
                claims[st.name.text] = self.claim(st)
        if study is None:
            self.error('a spec needs a `study "title"` line', self.spec.pos)
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise MultipleErrors(list(self.errors))
        return p.Plan(
            study=study or "",
            source=self.spec.pos.uri,
            run=run,
            probes=tuple(self.probes.values()),
            confidence=confidence,
            claims=tuple(claims.values()),
        )

    def declare_probe(self, st: s.ProbeDecl) -> None:
        if st.name.text in self.probes:
            self.error(f"probe `{st.name.text}` is declared twice", st.name.pos)
        if st.n < 1:
            self.error("a probe needs at least 1 sequence", st.pos)
        if self.signature is not None:
            splits = self.signature["splits"]
            if st.split.text not in splits:
                hint = suggest(st.split.text, splits)
                self.error(f"unknown split `{st.split.text}`{hint}", st.split.pos)
            elif st.n > splits[st.split.text]:
                size = splits[st.split.text]
                self.error(f"split `{st.split.text}` has {size} sequences, not {st.n}", st.pos)
        self.probes[st.name.text] = p.Probe(
            name=st.name.text, split=st.split.text, n=st.n, seed=st.seed
        )

    def claim(self, st: s.Claim) -> p.ClaimPlan:
        return p.ClaimPlan(
            name=st.name.text,
            statement=st.text,
            expect=st.expect,
            predictions=tuple(self.prediction(pr) for pr in st.predictions),
            source=_ref(st.pos),
        )

    def prediction(self, pr: s.Prediction) -> p.PredictionPlan:
        if pr.probe.text not in self.probes:
            hint = suggest(pr.probe.text, self.probes)
            self.error(
                f"probe `{pr.probe.text}` is not declared before this claim{hint}", pr.probe.pos
            )
        return p.PredictionPlan(
            step=self.step(pr.step),
            probe=pr.probe.text,
            left=self.expr(pr.comparison.left),
            op=pr.comparison.op,
            right=self.expr(pr.comparison.right),
            text=self.source_text(pr.pos),
            source=_ref(pr.pos),
        )

    def step(self, st: s.Step) -> p.StepRef:
        if st.kind == "number" and self.signature is not None:
            steps = self.signature["checkpoints"]
            if st.number not in steps:
                nearest = min(steps, key=lambda x: abs(x - (st.number or 0))) if steps else None
                hint = f"; the nearest is {nearest}" if nearest is not None else ""
                self.error(f"no checkpoint at step {st.number}{hint}", st.pos)
        return p.StepRef(kind=st.kind, number=st.number)

    def expr(self, e: s.Expr) -> p.QuantityExpr | p.NumberExpr | p.BinaryExpr:
        if isinstance(e, s.Number):
            return p.NumberExpr(value=e.value)
        if isinstance(e, s.BinOp):
            return p.BinaryExpr(op=e.op, left=self.expr(e.left), right=self.expr(e.right))
        name = e.name.text
        if name not in p.QUANTITIES:
            self.error(f"unknown quantity `{name}`{suggest(name, p.QUANTITIES)}", e.pos)
            return p.QuantityExpr(name="accuracy")  # placeholder so checking can go on
        return p.QuantityExpr(name=name)  # type: ignore[arg-type]

    def source_text(self, pos: SourcePosition) -> str:
        if pos.line != pos.end_line:
            return " ".join(self.lines[pos.line - 1 : pos.end_line]).strip()
        return self.lines[pos.line - 1][pos.column - 1 : pos.end_column - 1]


def compile_spec(spec: s.Spec, text: str, signature: dict[str, Any] | None = None) -> p.Plan:
    """Check `spec` (its source `text` is used for quoting predictions) and compile it."""
    return _Compiler(spec, text, signature).compile()
