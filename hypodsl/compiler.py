"""Semantic checks and compilation: syntax tree (+ optional run signature) to `Plan`.

Every problem in a file (and the files it imports) is collected before anything is raised, so
one run of `hypo check` reports them all, each at its `file:line:col`, with a suggestion when a
known name is close. The signature is the plain-JSON `signature.json` a training run writes;
without one, the checks that need it (splits, steps, ranges, roles) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from hypodsl import plan as p
from hypodsl import syntax as s
from hypodsl.compile_features import FeatureChecks
from hypodsl.errors import (
    HypError,
    HypValidationError,
    MultipleErrors,
    SourcePosition,
    collector_paused,
    flatten,
    suggest,
)
from hypodsl.quantities import (
    ABLATION_METHODS,
    GRAM_GROUPS,
    GRAM_NOT_MEASURED,
    INTERVENTIONS,
    NOT_MEASURED,
    QUANTITIES,
)
from hypodsl.sources import read_spec_text

# Reads an imported file: (path) -> (text, spec), raising HypError on syntax errors.
Loader = Callable[[Path], str]  # an imported file's text (see hypodsl.sources)


def _ref(pos: SourcePosition) -> p.SourceRef:
    return p.SourceRef(uri=pos.uri, line=pos.line, column=pos.column)


class _Scope:
    """Declared names, one namespace for probes, windows, paths and circuits."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.probes: dict[str, p.Probe] = {}
        self.windows: dict[str, p.RangeWindow | p.BirthWindow] = {}
        self.paths: dict[str, p.PathPlan] = {}
        self.circuits: dict[str, tuple[str, ...]] = {}
        self.bases: dict[str, p.BasisRef] = {}
        self.basis_width: dict[str, int | None] = {}
        self.families: dict[str, p.FeatureNode] = {}
        self.selections: dict[str, p.Selection] = {}


class _Compiler(FeatureChecks):
    def __init__(
        self, signature: dict[str, Any] | None, loader: Loader, sources: dict[str, str]
    ) -> None:
        self.signature = signature
        self.loader = loader
        self.sources = sources
        self.errors: list[HypError] = []
        self.scope = _Scope()
        self.imports: list[str] = []
        self.claims: dict[str, p.ClaimPlan] = {}
        self._lines: dict[str, list[str]] = {}

    def error(self, message: str, pos: SourcePosition) -> None:
        self.errors.append(HypValidationError(message, pos))

    # --- files and statements -------------------------------------------------------------

    def compile(self, spec: s.Spec) -> p.Plan:
        header = self.declarations(spec, stack=(spec.pos.uri,), main=True)
        claims = self.claims
        if header["study"] is None and claims:
            self.error('a spec with claims needs a `study "title"` line', spec.pos)
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise MultipleErrors([e for err in self.errors for e in flatten(err)])
        sc = self.scope
        return p.Plan(
            study=header["study"] or "",
            source=spec.pos.uri,
            imports=tuple(self.imports),
            run=header["run"],
            runs=header["runs"],
            probes=tuple(sc.probes.values()),
            confidence=header["confidence"],
            correction=header["correction"],
            marks=tuple(header["marks"]),
            windows=tuple(sc.windows.values()),
            paths=tuple(sc.paths.values()),
            circuits=dict(sc.circuits),
            bases=tuple(sc.bases.values()),
            families=dict(sc.families),
            selections=tuple(sc.selections.values()),
            claims=tuple(claims.values()),
        )

    def declarations(self, spec: s.Spec, stack: tuple[str, ...], main: bool) -> dict[str, Any]:
        """Declare every name of `spec` in order; in the main file, compile each claim where it
        stands, so it sees only the names declared above it."""
        header: dict[str, Any] = {
            "study": None,
            "run": None,
            "runs": None,
            "confidence": 0.95,
            "correction": "holm",
            "marks": [],
        }
        for st in spec.statements:
            match st:
                case s.Study():
                    if header["study"] is not None:
                        self.error("a spec has one `study` line; this is a second", st.pos)
                    header["study"] = st.title
                case s.RunDecl() | s.RunsDecl():
                    if header["run"] or header["runs"]:
                        self.error("a spec declares one `run` or `runs`; this is a second", st.pos)
                    elif isinstance(st, s.RunDecl):
                        header["run"] = p.RunRef(name=st.name.text, path=st.path)
                    else:
                        header["runs"] = p.RunsRef(name=st.name.text, pattern=st.pattern)
                case s.ImportDecl():
                    self.import_file(st, stack)
                case s.ConfidenceDecl():
                    if not 0.5 <= st.level < 1:
                        self.error(f"confidence must be in [0.5, 1), not {st.level:g}", st.pos)
                    header["confidence"] = st.level
                case s.CorrectionDecl():
                    header["correction"] = st.method
                case s.MarkDecl():
                    for mark in st.names:
                        if mark.text in header["marks"]:
                            self.error(f"mark `{mark.text}` is given twice", mark.pos)
                        else:
                            header["marks"].append(mark.text)
                case s.ProbeDecl():
                    self.declare_probe(st)
                case s.WindowDecl():
                    if self.declare(st.name, "window"):
                        self.scope.windows[st.name.text] = self.window(st)
                case s.PathDecl():
                    if self.declare(st.name, "path"):
                        self.scope.paths[st.name.text] = self.path(st.path, st.name.text)
                case s.CircuitDecl():
                    self.declare_circuit(st)
                case s.BasisDecl():
                    self.declare_basis(st)
                case s.FamilyDecl():
                    self.declare_family(st)
                case s.SelectDecl():
                    self.declare_select(st)
                case s.Claim() if not main:
                    self.error(
                        "an imported file shares declarations; it cannot hold claims", st.pos
                    )
                case s.Claim():
                    if st.name.text in self.claims:
                        self.error(f"claim `{st.name.text}` is declared twice", st.name.pos)
                    self.claims[st.name.text] = self.claim(st)
        return header

    def import_file(self, st: s.ImportDecl, stack: tuple[str, ...]) -> None:
        path = (Path(st.pos.uri).parent / st.path).resolve()
        chain = [Path(u).resolve() for u in stack]
        if path in chain:
            cycle = " -> ".join(Path(u).name for u in (*stack, str(path)))
            self.error(f"import cycle: {cycle}", st.pos)
            return
        from hypodsl.parser import parse

        try:
            text = self.loader(path)
        except HypError as e:  # not UTF-8: the error names the byte's line and column
            self.errors.append(e)
            return
        except OSError as e:
            self.error(f"cannot import `{st.path}`: {e.strerror or e}", st.pos)
            return
        self.sources[str(path)] = text  # so an error in it is shown with its source line
        try:
            spec = parse(text, str(path))
        except HypError as e:
            self.errors.append(e)
            return
        self.imports.append(str(path))
        self.declarations(spec, (*stack, spec.pos.uri), main=False)

    def declare(self, name: s.Name, kind: str) -> bool:
        if name.text in self.scope.kinds:
            other = self.scope.kinds[name.text]
            what = "twice" if other == kind else f"twice (first as a {other})"
            self.error(f"{kind} `{name.text}` is declared {what}", name.pos)
            return False
        self.scope.kinds[name.text] = kind
        return True

    def declare_probe(self, st: s.ProbeDecl) -> None:
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
        if self.declare(st.name, "probe"):
            self.scope.probes[st.name.text] = p.Probe(
                name=st.name.text, split=st.split.text, n=st.n, seed=st.seed
            )

    def declare_circuit(self, st: s.CircuitDecl) -> None:
        for ref in st.paths:
            self.lookup(ref, "path")
        if self.declare(st.name, "circuit"):
            self.scope.circuits[st.name.text] = tuple(r.text for r in st.paths)

    def lookup(self, ref: s.Name, *kinds: str) -> str | None:
        """The kind of a declared name, or None after reporting why it cannot be used here."""
        kind = self.scope.kinds.get(ref.text)
        wanted = " or ".join(kinds)
        if kind is None:
            known = [n for n, k in self.scope.kinds.items() if k in kinds]
            hint = suggest(ref.text, known)
            self.error(f"{wanted} `{ref.text}` is not declared before this use{hint}", ref.pos)
            return None
        if kind not in kinds:
            self.error(f"`{ref.text}` is a {kind}; a {wanted} is expected here", ref.pos)
            return None
        return kind

    # --- windows and paths --------------------------------------------------------------------

    def window(self, st: s.WindowDecl) -> p.RangeWindow | p.BirthWindow:
        w = st.window
        if isinstance(w, s.WindowBirth):
            cond = self.birth_condition(w.birth, None)
            return p.BirthWindow(name=st.name.text, relation=w.relation, condition=cond)
        if w.start is not None and w.end is not None and w.start > w.end:
            self.error(f"window `{st.name.text}` starts after it ends ({w.start} > {w.end})", w.pos)
        return p.RangeWindow(name=st.name.text, start=w.start, end=w.end)

    def path(self, expr: s.PathExpr, name: str | None = None) -> p.PathPlan:
        nodes = tuple(x for x in (self.node(n) for n in expr.nodes) if x is not None)
        for i, n in enumerate(expr.nodes):
            if isinstance(n, s.Unembed) and i != len(expr.nodes) - 1:
                self.error("`unembed` can only end a path", n.pos)
            if isinstance(n, s.Embed | s.Pos) and i != 0:
                self.error(
                    f"`{'embed' if isinstance(n, s.Embed) else 'pos'}` can only start a path", n.pos
                )
        layers = [getattr(n, "layer", None) for n in expr.nodes]
        inner = [x for x in layers if x is not None]
        if any(b < a for a, b in pairwise(inner)):
            self.error("a path runs forward through the layers; these go backwards", expr.pos)
        self.check_feature_path(nodes, expr.pos)
        return p.PathPlan(name=name, nodes=nodes)

    def node(self, n: s.PathNode) -> Any:
        layer = getattr(n, "layer", None)
        if layer is not None:
            self.check_layer(layer, n.pos)
        match n:
            case s.Embed():
                return p.EmbedNode()
            case s.Pos():
                return p.PosNode()
            case s.Unembed():
                return p.UnembedNode()
            case s.Head(layer=layer, head=head):
                self.check_head(head, n.pos)
                return p.HeadNode(layer=layer, head=head)
            case s.HeadInput(layer=layer, head=head, input=inp):
                self.check_head(head, n.pos)
                return p.HeadInputNode(layer=layer, head=head, input=inp)
            case s.HeadQK(layer=layer, head=head, from_role=fr, to_role=to):
                self.check_head(head, n.pos)
                self.check_role(fr)
                self.check_role(to)
                return p.HeadQKNode(layer=layer, head=head, from_role=fr.text, to_role=to.text)
            case s.Mlp(layer=layer):
                return p.MlpNode(layer=layer)
            case s.Neurons(layer=layer, indices=indices):
                self.check_neurons(indices, n.pos)
                return p.NeuronsNode(layer=layer, indices=indices)
            case s.Feature(index=None):
                return self.error_node(n)
            case s.Feature() | s.FeatureSet():
                return self.feature_ref(n, "a path")
            case s.Name():
                return self.named_node(n)
        raise TypeError(n)

    def check_layer(self, layer: int, pos: SourcePosition) -> None:
        if self.signature is not None:
            n = self.signature["model"]["n_layers"]
            if layer >= n:
                self.error(
                    f"layer {layer} is out of range: the model has {n} layers (0..{n - 1})", pos
                )

    def check_head(self, head: int, pos: SourcePosition) -> None:
        if self.signature is not None:
            n = self.signature["model"]["n_heads"]
            if head >= n:
                self.error(
                    f"head {head} is out of range: each layer has {n} heads (0..{n - 1})", pos
                )

    def check_neurons(self, indices: tuple[int, ...], pos: SourcePosition) -> None:
        if len(set(indices)) != len(indices):
            self.error("a neuron is listed twice", pos)
        if self.signature is not None:
            width = self.signature["model"]["d_ff"]
            bad = [i for i in indices if i >= width]
            if bad:
                self.error(f"neuron {bad[0]} is out of range: the MLP has {width} neurons", pos)

    def check_role(self, role: s.Name) -> None:
        if self.signature is not None and role.text not in self.signature["roles"]:
            hint = suggest(role.text, self.signature["roles"])
            self.error(f"unknown role `{role.text}`{hint}", role.pos)

    def check_step(self, number: int, pos: SourcePosition) -> None:
        if self.signature is None:
            return
        steps = self.signature["checkpoints"]
        if number not in steps:
            nearest = min(steps, key=lambda x: abs(x - number)) if steps else None
            hint = f"; the nearest is {nearest}" if nearest is not None else ""
            self.error(f"no checkpoint at step {number}{hint}", pos)

    # --- claims ---------------------------------------------------------------------------------

    def claim(self, st: s.Claim) -> p.ClaimPlan:
        return p.ClaimPlan(
            name=st.name.text,
            statement=st.text,
            expect=st.expect,
            exploratory=st.exploratory,
            prior=self.prior_status(st),
            pending=st.pending,
            pending_reason=st.pending_reason,
            predictions=tuple(self.prediction(pr) for pr in st.predictions),
            source=_ref(st.pos),
        )

    def prior_status(self, st: s.Claim) -> str | None:
        for option in sorted({o for o in st.options if st.options.count(o) > 1}):
            self.error(f"claim `{st.name.text}` says `{option}` twice", st.pos)
        if st.prior is None:
            return None
        status = " ".join(st.prior.lower().split())
        if status not in p.STATUSES:
            known = ", ".join(f'"{x.capitalize()}"' for x in p.STATUSES)
            self.error(f"`prior` takes one of {known}; not {st.prior!r}", st.pos)
        return status

    def prediction(self, pr: s.Prediction) -> p.TimedPrediction | p.BirthOrder:
        if isinstance(pr, s.BirthOrder):
            left = self.birth_condition(pr.left, pr.probe)
            right = self.birth_condition(pr.right, pr.probe)
            return p.BirthOrder(
                left=left,
                relation=pr.relation,
                right=right,
                text=self.source_text(pr.pos),
                source=_ref(pr.pos),
            )
        when: p.At | p.Over
        if isinstance(pr.when, s.At):
            when = p.At(step=self.step(pr.when.step))
        else:
            self.lookup(pr.when.window, "window")
            when = p.Over(window=pr.when.window.text, aggregate=pr.when.aggregate)
        cmp = pr.comparison
        probe = self.default_probe(pr.probe, cmp, pr.pos)
        self.check_tested_on_other_data(_terms(cmp), probe)
        return p.TimedPrediction(
            when=when,
            probe=probe,
            left=self.expr(cmp.left),
            op=cmp.op,
            right=self.expr(cmp.right),
            text=self.source_text(pr.pos),
            source=_ref(pr.pos),
        )

    def birth_condition(self, birth: s.Birth, probe: s.Name | None) -> p.Condition:
        cmp = birth.condition
        on = self.default_probe(probe, cmp, birth.pos)
        self.check_tested_on_other_data(_terms(cmp), on)
        return p.Condition(
            left=self.expr(cmp.left), op=cmp.op, right=self.expr(cmp.right), probe=on,
            rule=birth.rule,
        )  # fmt: skip

    def default_probe(self, probe: s.Name | None, cmp: s.Comparison, pos: SourcePosition) -> str:
        """The written `on PROBE`, else the probe named on the comparison's first quantity."""
        if probe is not None:
            self.lookup(probe, "probe")
            return probe.text
        named = [t.probe for t in _terms(cmp) if t.probe is not None]
        if named:
            return named[0].text
        self.error("no probe: write `on PROBE` (after `at ...`, or on a quantity)", pos)
        return ""

    def step(self, st: s.Step) -> p.StepRef:
        if st.kind == "number":
            assert st.number is not None
            self.check_step(st.number, st.pos)
        return p.StepRef(kind=st.kind, number=st.number)

    def expr(self, e: s.Expr) -> Any:
        match e:
            case s.Number(value=value):
                return p.NumberExpr(value=value)
            case s.Sum(terms=terms, ops=ops):
                return p.SumExpr(terms=tuple(self.expr(t) for t in terms), ops=ops)
            case s.BinOp(op=op, left=left, right=right):
                return p.BinaryExpr(op=op, left=self.expr(left), right=self.expr(right))
            case s.Neg(operand=operand):
                return p.UnaryExpr(op="neg", operand=self.expr(operand))
            case s.Abs(operand=operand):
                return p.UnaryExpr(op="abs", operand=self.expr(operand))
            case s.Term():
                return self.term(e)
        raise TypeError(e)

    def term(self, t: s.Term) -> p.QuantityExpr:
        if t.probe is not None:
            self.lookup(t.probe, "probe")
        edits = [(c, self.intervention(c)) for c in t.interventions]
        self.check_interventions(t, edits)
        interventions = tuple(x for _, x in edits if x)
        fields = self.quantity_args(t.call)
        return p.QuantityExpr(
            name=t.call.name.text,
            probe=t.probe.text if t.probe else None,
            interventions=interventions,
            **fields,
        )

    def check_interventions(self, t: s.Term, edits: list[tuple[s.Call, Any]]) -> None:
        """Interventions only on quantities measured under them, each component edited once."""
        if not edits:
            return
        name = t.call.name.text
        spec = QUANTITIES.get(name)
        if spec is not None and not spec.intervened:
            measured = ", ".join(f"`{n}`" for n, q in QUANTITIES.items() if q.intervened)
            self.error(
                f"`{name}` is not measured under interventions; {measured} are", edits[0][0].pos
            )
        seen: set[str] = set()
        for call, edit in edits:
            if edit is None:
                continue
            target = edit.target.model_dump_json()
            if target in seen:
                what = self.source_text(call.args[0].pos) if call.args else "a component"
                self.error(
                    f"`{what}` is ablated or patched twice in one term: which edit wins would be "
                    "arbitrary",
                    call.pos,
                )
            seen.add(target)

    def quantity_args(self, c: s.Call) -> dict[str, Any]:
        name = c.name.text
        spec = QUANTITIES.get(name)
        if spec is None and name in NOT_MEASURED:
            self.error(f"`{name}` is not measured by this runner: {NOT_MEASURED[name]}", c.name.pos)
            return {}
        if spec is None:
            self.error(f"unknown quantity `{name}`{suggest(name, QUANTITIES)}", c.name.pos)
            return {}
        args = c.args or ()
        positional = [a for a in args if a.keyword is None]
        keywords = {a.keyword.text: a for a in args if a.keyword is not None}
        takes_positional = spec.component or spec.path or spec.features
        if len(positional) != int(takes_positional):
            what = (
                "a head" if spec.component else "a path or circuit" if spec.path
                else "features (`l2.f27`, `l2[27, 54]` or a family)" if spec.features
                else "nothing"
            )  # fmt: skip
            self.error(f"`{name}` takes {what} as its argument", c.pos)
        out: dict[str, Any] = {}
        first = positional[0].value if positional else None
        if first is not None and spec.component:
            out["component"] = self.component(first, name)
        elif first is not None and spec.features:
            out["features"] = self.feature_ref(first, f"`{name}`")
        elif isinstance(first, s.Call) and spec.score:
            out["target"] = self.score_target(first, name)
        elif first is not None and spec.path:
            out["paths"] = self.path_arg(first)
        roles = {}
        for key, arg in keywords.items():
            if key in spec.roles:
                if isinstance(arg.value, s.Name):
                    self.check_role(arg.value)
                    roles[key] = arg.value.text
                else:
                    self.error(f"`{key}=` takes a role name", arg.pos)
            elif key == "by" and spec.group:
                group = arg.value.text if isinstance(arg.value, s.Name) else ""
                if group in GRAM_NOT_MEASURED:
                    why = GRAM_NOT_MEASURED[group]
                    self.error(f"`gram(by={group})` is not measured by this runner: {why}", arg.pos)
                elif group not in GRAM_GROUPS:
                    self.error(f"`by=` takes one of {', '.join(GRAM_GROUPS)}", arg.pos)
                out["group"] = group
            elif key == "scope" and spec.scope:
                out["scope"] = self.scope_arg(arg)
            else:
                accepted = [*spec.roles, *(["by"] if spec.group else [])]
                accepted += ["scope"] if spec.scope else []
                hint = suggest(key, accepted)
                self.error(f"`{name}` has no argument `{key}`{hint}", arg.keyword.pos)  # type: ignore[union-attr]
        for missing in set(spec.required_roles) - set(keywords):
            self.error(f"`{name}` needs `{missing}=ROLE`", c.pos)
        if roles:
            out["roles"] = roles
        return out

    def scope_arg(self, arg: s.Arg) -> Any:
        """`scope=`: a component whose parameters carry the part of the drive measured."""
        v = arg.value
        if isinstance(v, s.Head | s.Mlp | s.Neurons | s.Embed | s.Pos):
            return self.node(v)
        if isinstance(v, s.Name):
            node = self.named_node(v)
            if isinstance(node, p.SelectionNode):
                return node
        self.error("`scope=` takes a head, an MLP, neurons, `embed` or `pos`", arg.pos)
        return None

    def component(self, v: Any, quantity: str) -> Any:
        if isinstance(v, s.Head):
            return self.node(v)
        if isinstance(v, s.Name) and self.scope.kinds.get(v.text) == "selection":
            sel = self.scope.selections.get(v.text)
            if sel is not None and sel.unit == "heads":
                return p.SelectionNode(name=v.text)
        self.error(f"`{quantity}` takes a head such as `L1.H2` here", v.pos)
        return None

    def path_arg(self, v: Any) -> tuple[p.PathPlan, ...]:
        if isinstance(v, s.PathExpr):
            return (self.path(v),)
        if isinstance(v, s.Name):
            if self.scope.kinds.get(v.text) in ("family", "selection"):
                return (p.PathPlan(nodes=(self.named_node(v), p.UnembedNode())),)
            kind = self.lookup(v, "path", "circuit")
            if kind == "path":
                return (self.scope.paths[v.text],)
            if kind == "circuit":
                return tuple(
                    self.scope.paths[n]
                    for n in self.scope.circuits[v.text]
                    if n in self.scope.paths
                )
            return ()
        if isinstance(v, s.Number | s.StepValue | s.Call):
            self.error("a path or circuit is expected here", v.pos)
            return ()
        # a single component or feature set: its direct path to the unembedding
        return (p.PathPlan(nodes=(self.node(v), p.UnembedNode())),)

    def intervention(self, c: s.Call) -> p.Ablation | p.Patch | None:
        name = c.name.text
        if name not in INTERVENTIONS:
            self.error(f"unknown intervention `{name}`{suggest(name, INTERVENTIONS)}", c.name.pos)
            return None
        args = c.args or ()
        positional = [a for a in args if a.keyword is None]
        keywords = {a.keyword.text: a for a in args if a.keyword is not None}
        target = positional[0].value if positional else None
        acts_on = s.Head | s.Mlp | s.Neurons | s.Embed | s.Pos | s.FeatureSet | s.Name
        if isinstance(target, s.Feature) and target.index is not None:
            node = self.feature_ref(target, f"`{name}`")
        elif target is None or not isinstance(target, acts_on):
            self.error(f"`{name}` needs a head, MLP, neurons or features to act on", c.pos)
            return None
        else:
            node = self.node(target)
        if node is None:
            return None
        if name == "ablate":
            method = positional[1].value if len(positional) == 2 else None
            if not isinstance(method, s.Name) or method.text not in ABLATION_METHODS or keywords:
                self.error(f"write `ablate(TARGET, {'|'.join(ABLATION_METHODS)})`", c.pos)
                return None
            return p.Ablation(target=node, method=method.text)  # type: ignore[arg-type]
        source = keywords.get("from")
        if source is None or len(positional) != 1 or len(keywords) != 1:
            self.error("write `patch(TARGET, from=STEP)` or `patch(TARGET, from=PROBE)`", c.pos)
            return None
        if isinstance(source.value, s.Number):
            if not source.value.value.is_integer():
                self.error(f"a step is a whole number; `{source.value.value:g}` is not", source.pos)
                return None
            step = int(source.value.value)
            self.check_step(step, source.value.pos)
            return p.Patch(target=node, from_step=p.StepRef(kind="number", number=step))
        if isinstance(source.value, s.StepValue):
            return p.Patch(target=node, from_step=p.StepRef(kind=source.value.kind))
        if isinstance(source.value, s.Name) and self.lookup(source.value, "probe"):
            return p.Patch(target=node, from_probe=source.value.text)
        if not isinstance(source.value, s.Name):
            self.error("`from=` takes a step or a probe", source.pos)
        return None

    def source_text(self, pos: SourcePosition) -> str:
        if pos.uri not in self._lines:  # split each file once: check stays linear in its size
            self._lines[pos.uri] = self.sources.get(pos.uri, "").splitlines()
        lines = self._lines[pos.uri]
        if not lines:
            return ""
        if pos.line == pos.end_line:
            return lines[pos.line - 1][pos.column - 1 : pos.end_column - 1]
        parts = [lines[pos.line - 1][pos.column - 1 :], *lines[pos.line : pos.end_line - 1]]
        parts.append(lines[pos.end_line - 1][: pos.end_column - 1])
        return " ".join(x.split("#")[0].strip() for x in parts if x.strip())


def _terms(e: Any) -> list[s.Term]:
    """Every quantity term in an expression or comparison, left to right."""
    if isinstance(e, s.Term):
        return [e]
    if isinstance(e, s.Comparison | s.BinOp):
        return _terms(e.left) + _terms(e.right)
    if isinstance(e, s.Sum):
        return [t for term in e.terms for t in _terms(term)]
    if isinstance(e, s.Neg | s.Abs):
        return _terms(e.operand)
    return []


def _default_loader(path: Path) -> str:
    return read_spec_text(path, imported=True)


def compile_spec(
    spec: s.Spec,
    text: str,
    signature: dict[str, Any] | None = None,
    loader: Loader = _default_loader,
    sources: dict[str, str] | None = None,
) -> p.Plan:
    """Check `spec` (with `text`, its source) and the files it imports, and compile it.

    `sources` (if given) receives the text of every imported file, for error messages.
    """
    sources = sources if sources is not None else {}
    sources[spec.pos.uri] = text
    with collector_paused():
        return _Compiler(signature, loader, sources).compile(spec)
