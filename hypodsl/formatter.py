"""`hypo fmt`: print any valid spec in one canonical layout, keeping its comments.

One statement per line; claims open a block with one prediction per line, indented two spaces;
a blank line between groups of declarations and around claims; expressions with the fewest
parentheses that keep their meaning. A comment on its own line stays above the statement or
prediction that follows it; a comment after code stays at the end of that line.
`parse(fmt(s)) == parse(s)` and `fmt(fmt(s)) == fmt(s)` hold for every valid spec (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypodsl import syntax as s

_GROUP = {
    s.Study: "study",
    s.RunDecl: "run",
    s.RunsDecl: "run",
    s.ImportDecl: "run",
    s.ProbeDecl: "probe",
    s.ConfidenceDecl: "probe",
    s.CorrectionDecl: "probe",
    s.MarkDecl: "probe",
    s.WindowDecl: "window",
    s.PathDecl: "path",
    s.CircuitDecl: "path",
    s.BasisDecl: "basis",
    s.FamilyDecl: "basis",
    s.SelectDecl: "select",
    s.Claim: "claim",
}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}  # a Sum is level 1


def number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def string(text: str) -> str:
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    body = "".join(escapes.get(c, c if c.isprintable() else _escape(c)) for c in text)
    return f'"{body}"'


def _escape(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def node(n: s.PathNode) -> str:
    match n:
        case s.Embed():
            return "embed"
        case s.Pos():
            return "pos"
        case s.Unembed():
            return "unembed"
        case s.Head(layer=layer, head=head):
            return f"L{layer}.H{head}"
        case s.HeadInput(layer=layer, head=head, input=inp):
            return f"L{layer}.H{head}.{inp}"
        case s.HeadQK(layer=layer, head=head, from_role=fr, to_role=to):
            return f"L{layer}.H{head}[{fr.text} <- {to.text}]"
        case s.Mlp(layer=layer):
            return f"L{layer}.mlp"
        case s.Neurons(layer=layer, indices=indices):
            return f"L{layer}.mlp[{', '.join(map(str, indices))}]"
        case s.Feature(basis=basis, index=index):
            return f"{basis.text}.{'error' if index is None else f'f{index}'}"
        case s.FeatureSet(basis=basis, indices=indices):
            return f"{basis.text}[{', '.join(map(str, indices))}]"
        case s.Name(text=text):
            return text
    raise TypeError(n)


def path(p: s.PathExpr) -> str:
    return " -> ".join(node(n) for n in p.nodes)


def value(v: s.PathExpr | s.PathNode | s.Number | s.StepValue | s.Call) -> str:
    if isinstance(v, s.PathExpr):
        return path(v)
    if isinstance(v, s.Call):
        return call(v)
    if isinstance(v, s.Number):
        return number(v.value)
    if isinstance(v, s.StepValue):
        return v.kind
    return node(v)


def call(c: s.Call) -> str:
    if c.args is None:
        return c.name.text
    args = ", ".join((f"{a.keyword.text}=" if a.keyword else "") + value(a.value) for a in c.args)
    return f"{c.name.text}({args})"


def expr(e: s.Expr, parent: int = 0, right_side: bool = False) -> str:
    if isinstance(e, s.Number):
        return number(e.value)
    if isinstance(e, s.Term):
        out = call(e.call)
        if e.probe:
            out += f" on {e.probe.text}"
        if e.interventions:
            out += " with " + " and ".join(call(c) for c in e.interventions)
        return out
    if isinstance(e, s.Abs):
        return f"|{expr(e.operand)}|"
    if isinstance(e, s.Neg):
        return f"-{expr(e.operand, 3)}"
    if isinstance(e, s.Sum):
        # A sum inside a sum was bracketed in the source (sums are flat): keep its brackets.
        text = expr(e.terms[0], 2)
        for op, term in zip(e.ops, e.terms[1:], strict=True):
            text += f" {op} {expr(term, 2)}"
        return f"({text})" if parent >= 1 else text
    level = _PRECEDENCE[e.op]
    text = f"{expr(e.left, level)} {e.op} {expr(e.right, level, right_side=True)}"
    needs = level < parent or (level == parent and right_side)
    return f"({text})" if needs else text


def comparison(c: s.Comparison) -> str:
    return f"{expr(c.left)} {c.op} {expr(c.right)}"


def birth(b: s.Birth) -> str:
    rule = ", first" if b.rule == "first" else ""
    return f"birth({comparison(b.condition)}{rule})"


def window(w: s.Window) -> str:
    if isinstance(w, s.WindowBirth):
        return (
            f".. before {birth(w.birth)}"
            if w.relation == "before"
            else f"after {birth(w.birth)} .."
        )
    start = "" if w.start is None else f"{w.start} "
    end = "" if w.end is None else f" {w.end}"
    return f"{start}..{end}".strip()


def prediction(p: s.Prediction) -> str:
    probe = f" on {p.probe.text}" if p.probe else ""
    if isinstance(p, s.BirthOrder):
        return f"{birth(p.left)} {p.relation} {birth(p.right)}{probe}"
    if isinstance(p.when, s.At):
        st = p.when.step
        when = f"at {st.number if st.kind == 'number' else st.kind}"
    else:
        when = f"over {p.when.window.text} ({p.when.aggregate})"
    return f"{when}{probe}: {comparison(p.comparison)}"


def statement_head(st: s.Statement) -> str:
    match st:
        case s.Study(title=title):
            return f"study {string(title)}"
        case s.RunDecl(name=name, path=p):
            return f"run {name.text} = {string(p)}"
        case s.RunsDecl(name=name, pattern=pattern):
            return f"runs {name.text} = {string(pattern)}"
        case s.ImportDecl(path=p):
            return f"import {string(p)}"
        case s.ProbeDecl(name=name, split=split, n=n, seed=seed):
            return f"probe {name.text} = split {split.text} n {n}" + (
                f" seed {seed}" if seed is not None else ""
            )
        case s.ConfidenceDecl(level=level):
            return f"confidence {number(level)}"
        case s.CorrectionDecl(method=method):
            return f"correction {method}"
        case s.MarkDecl(names=names):
            return "mark " + ", ".join(n.text for n in names)
        case s.WindowDecl(name=name, window=w):
            return f"window {name.text} = {window(w)}"
        case s.PathDecl(name=name, path=p):
            return f"path {name.text} = {path(p)}"
        case s.CircuitDecl(name=name, paths=paths):
            return f"circuit {name.text} = {' + '.join(p.text for p in paths)}"
        case s.BasisDecl(name=name, path=p, site=site, sha256=pin):
            text = f"basis {name.text} = {string(p)}" + (f" at {string(site)}" if site else "")
            return text + (f" sha256 {string(pin)}" if pin else "")
        case s.FamilyDecl(name=name, features=features):
            return f"family {name.text} = {node(features)}"
        case s.SelectDecl():
            return select(st)
        case s.Claim(name=name, text=text, expect=expect, pending=pending):
            head = f"claim {name.text} {string(text)}" + (f" expect {expect}" if expect else "")
            head += " exploratory" if st.exploratory else ""
            head += f" prior {string(st.prior)}" if st.prior is not None else ""
            if not pending:
                return head + " {"
            reason = f" {string(st.pending_reason)}" if st.pending_reason is not None else ""
            return head + " pending" + reason
    raise TypeError(st)


def select(st: s.SelectDecl) -> str:
    if isinstance(st.units, s.Mlp):
        units = f"{node(st.units)} neurons"
    elif isinstance(st.units, s.HeadUnits):
        units = "heads" if st.units.layer is None else f"{st.units.layer.text} heads"
    else:
        units = f"{st.units.text} features"
    if st.by is not None:
        rule = f"top {st.top} by {call(st.by)}"
    else:
        rule = "where " + " and ".join(
            f"{call(c.call)} {c.op} {number(c.value)}" for c in st.criteria
        )
    span = st.window.text if isinstance(st.window, s.Name) else window(st.window)
    return f"select {st.name.text} = {units} {rule} over {span} on {st.probe.text}"


@dataclass
class _Line:
    start: int  # source line where the element starts
    text: str
    indent: str = ""
    leading: list[str] = field(default_factory=list)
    trailing: str = ""


def fmt(spec: s.Spec) -> str:
    """The canonical text of a spec, comments included."""
    blocks: list[tuple[str, list[_Line]]] = []
    for st in spec.statements:
        lines = [_Line(st.pos.line, statement_head(st))]
        if isinstance(st, s.Claim) and not st.pending:
            lines += [_Line(p.pos.line, prediction(p), "  ") for p in st.predictions]
            lines.append(_Line(-1, "}"))
        blocks.append((_GROUP[type(st)], lines))
    footer = _attach_comments(spec.comments, [ln for _, b in blocks for ln in b])
    out: list[str] = []
    previous = None
    for group, lines in blocks:
        if previous is not None and (group != previous or group == "claim"):
            out.append("")
        previous = group
        for ln in lines:
            out += [ln.indent + c for c in ln.leading]
            out.append(ln.indent + ln.text + (f"  {ln.trailing}" if ln.trailing else ""))
    if footer:
        out += ([""] if out else []) + footer
    return "\n".join(out) + "\n"


def _attach_comments(comments: tuple[s.Comment, ...], lines: list[_Line]) -> list[str]:
    """Put each comment on the element it trails or precedes; return those left for the end."""
    anchored = [ln for ln in lines if ln.start > 0]
    footer = []
    for comment in comments:
        line = comment.pos.line
        if comment.own_line:
            after = [ln for ln in anchored if ln.start > line]
            if after:
                after[0].leading.append(comment.text)
            else:
                footer.append(comment.text)
            continue
        # a comment after code trails the innermost element starting on or before its line
        target = [ln for ln in anchored if ln.start <= line][-1]
        target.trailing = f"{target.trailing} {comment.text}".strip()
    return footer
