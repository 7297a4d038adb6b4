"""`hypo plan`: a compiled plan as a Rich tree (a pure function of the plan)."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from hypodsl import plan as p
from hypodsl.escape import for_terminal
from hypodsl.plan import Plan


def node_text(n: object) -> str:
    match n:
        case p.HeadNode(layer=layer, head=head):
            return f"L{layer}.H{head}"
        case p.HeadInputNode(layer=layer, head=head, input=inp):
            return f"L{layer}.H{head}.{inp}"
        case p.HeadQKNode(layer=layer, head=head, from_role=fr, to_role=to):
            return f"L{layer}.H{head}[{fr} <- {to}]"
        case p.MlpNode(layer=layer):
            return f"L{layer}.mlp"
        case p.NeuronsNode(layer=layer, indices=indices):
            return f"L{layer}.mlp[{', '.join(map(str, indices))}]"
    return str(getattr(n, "kind", n))


def expr_text(e: object) -> str:
    match e:
        case p.NumberExpr(value=value):
            return f"{value:g}"
        case p.UnaryExpr(op="neg", operand=operand):
            return f"-({expr_text(operand)})"
        case p.UnaryExpr(operand=operand):
            return f"|{expr_text(operand)}|"
        case p.SumExpr(terms=terms, ops=ops):
            rest = "".join(f" {op} {expr_text(t)}" for op, t in zip(ops, terms[1:], strict=True))
            return f"({expr_text(terms[0])}{rest})"
        case p.BinaryExpr(op=op, left=left, right=right):
            return f"({expr_text(left)} {op} {expr_text(right)})"
        case p.QuantityExpr():
            return quantity_text(e)
    raise TypeError(e)


def quantity_text(q: p.QuantityExpr) -> str:
    args = [node_text(q.component)] if q.component else []
    args += [" -> ".join(node_text(n) for n in path.nodes) for path in q.paths]
    args += [f"{k}={v}" for k, v in q.roles.items()] + ([f"by={q.group}"] if q.group else [])
    text = q.name + (f"({', '.join(args)})" if args else "")
    if q.probe:
        text += f" on {q.probe}"
    for i in q.interventions:
        target = node_text(i.target)
        if isinstance(i, p.Ablation):
            text += f" with ablate({target}, {i.method})"
        else:
            source = i.from_step.label() if i.from_step else i.from_probe
            text += f" with patch({target}, from={source})"
    return text


def window_text(w: p.RangeWindow | p.BirthWindow) -> str:
    if isinstance(w, p.RangeWindow):
        return f"{'' if w.start is None else w.start} .. {'' if w.end is None else w.end}".strip()
    c = w.condition
    cond = f"{expr_text(c.left)} {c.op} {expr_text(c.right)} on {c.probe}"
    return f"{w.relation} birth({cond})"


def plan_tree(plan: Plan) -> Tree:
    """Every label is a `Text` built from the plan's strings, so names and titles print as
    written (no markup, control characters escaped) on any console."""
    hash12 = plan.content_hash()[:12]
    root = Tree(
        Text.assemble(
            (for_terminal(plan.study), "bold"), f"  ({for_terminal(plan.source)}, plan {hash12})"
        )
    )
    if plan.run:
        root.add(_text(f"run {plan.run.name} = {plan.run.path}"))
    if plan.runs:
        root.add(_text(f"runs {plan.runs.name} = {plan.runs.pattern}"))
    root.add(_text(f"confidence {plan.confidence:g}, correction {plan.correction}"))
    if plan.marks:
        root.add(_text("mark " + ", ".join(plan.marks)))
    for title, items in (
        (
            "probes",
            [
                f"{x.name}: {x.split} n {x.n}" + (f" seed {x.seed}" if x.seed is not None else "")
                for x in plan.probes
            ],
        ),
        ("windows", [f"{w.name}: {window_text(w)}" for w in plan.windows]),
        ("paths", [f"{x.name}: " + " -> ".join(node_text(n) for n in x.nodes) for x in plan.paths]),
        ("circuits", [f"{n}: {' + '.join(ps)}" for n, ps in plan.circuits.items()]),
    ):
        if items:
            branch = root.add(_text(title))
            for item in items:
                branch.add(_text(item), highlight=False)
    claims = root.add(_text("claims"))
    for claim in plan.claims:
        statement = for_terminal(claim.statement)
        label = Text.assemble((for_terminal(claim.name), "bold"), f" — {statement}")
        if claim.pending:
            label.append(" (pending)", style="blue")
        if claim.expect:
            label.append(f" (expect {claim.expect})")
        node = claims.add(label)
        for pred in claim.predictions:
            node.add(_text(f"line {pred.source.line}: {pred.text}"), highlight=False)
    return root


def _text(text: str) -> Text:
    return Text(for_terminal(text))
