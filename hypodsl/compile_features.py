"""The compiler's checks for feature bases, families and selections (a mixin of
`hypodsl.compiler._Compiler`).

- `basis l2 = "features/l2"` must name a basis the run's `signature.json` lists (written by
  `hypo features fit`), fitted on this run; `at "HOOK"`, when written, must be its site.
- `l2.f27`, `l2[27, 54]` and families name features below the basis's width, once each.
- A feature can start a path only as `F -> unembed`, and end one only after one component
  (`L0.mlp -> F`); the error term `l2.error` only as `l2.error -> unembed`.
- `select` chooses neurons or features on one probe; a claim that tests the selection must read
  another split (discovery and testing must not share data): reading the selecting probe's split
  is an error at the place the selection is used.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from hypodsl import plan as p
from hypodsl import syntax as s
from hypodsl.errors import SourcePosition, suggest
from hypodsl.quantities import QUANTITIES, SCORES, SELECT_QUANTITIES


class FeatureChecks:
    """Methods the compiler mixes in; they use its scope, signature and error list."""

    scope: Any
    signature: dict[str, Any] | None

    def error(self, message: str, pos: SourcePosition) -> None:
        raise NotImplementedError

    def declare(self, name: s.Name, kind: str) -> bool:
        raise NotImplementedError

    def lookup(self, ref: s.Name, *kinds: str) -> str | None:
        raise NotImplementedError

    def check_layer(self, layer: int, pos: SourcePosition) -> None:
        raise NotImplementedError

    def check_role(self, name: s.Name) -> None:
        raise NotImplementedError

    def source_text(self, pos: SourcePosition) -> str:
        raise NotImplementedError

    def node(self, n: s.PathNode) -> Any:
        raise NotImplementedError

    def window(self, st: s.WindowDecl) -> p.RangeWindow | p.BirthWindow:
        raise NotImplementedError

    # --- declarations ---------------------------------------------------------------------

    def declare_basis(self, st: s.BasisDecl) -> None:
        if st.sha256 is not None and not re.fullmatch(r"[0-9a-f]{12,64}", st.sha256):
            self.error(
                "`sha256` takes 12 to 64 lowercase hex digits of the basis weights' SHA-256 "
                "(`hypo features explore` and the run's signature.json show it)",
                st.pos,
            )
        width = self._check_basis_entry(st)
        if self.declare(st.name, "basis"):
            self.scope.bases[st.name.text] = p.BasisRef(
                name=st.name.text, path=st.path, site=st.site, sha256=st.sha256
            )
            self.scope.basis_width[st.name.text] = width

    def _check_basis_entry(self, st: s.BasisDecl) -> int | None:
        """The basis's width from the signature (None without one), after checking its entry."""
        if self.signature is None:
            return None
        listed = self.signature.get("bases") or {}
        listed = listed if isinstance(listed, dict) else {}
        key = posixpath.normpath(st.path)
        entry = listed.get(key)
        if not isinstance(entry, dict):
            hint = suggest(key, listed)
            self.error(
                f"no feature basis at `{st.path}` in this run{hint}; fit one with "
                f"`hypo features fit --run RUN --site HOOK --out RUN/{key}`",
                st.pos,
            )
            return None
        site = entry.get("site")
        if st.site is not None and site != st.site:
            self.error(f"basis `{st.name.text}` is fitted at `{site}`, not `{st.site}`", st.pos)
        for field in ("data_hash", "config_hash"):
            ours, theirs = self.signature.get(field), entry.get(field)
            if ours is not None and theirs is not None and ours != theirs:
                self.error(
                    f"basis `{st.name.text}` was fitted on another run ({field} "
                    f"{str(theirs)[:12]}, this run's is {str(ours)[:12]})",
                    st.pos,
                )
                break
        weights = entry.get("weights_sha256")
        if st.sha256 is not None and isinstance(weights, str) and not weights.startswith(st.sha256):
            self.error(
                f"basis `{st.name.text}` is pinned to sha256 {st.sha256}, but the run's basis at "
                f"`{st.path}` is {weights[:12]}: it was fitted again, and its feature ids name "
                "other directions",
                st.pos,
            )
        width = entry.get("d_sae")
        return width if isinstance(width, int) and width > 0 else None

    def declare_family(self, st: s.FamilyDecl) -> None:
        ref = self.feature_ref(st.features, "a family")
        if self.declare(st.name, "family") and isinstance(ref, p.FeatureNode):
            self.scope.families[st.name.text] = ref.model_copy(update={"label": st.name.text})

    def declare_select(self, st: s.SelectDecl) -> None:
        unit, fields = self._select_units(st)
        criteria = tuple(self._criterion(c.call, unit, c.op, c.value) for c in st.criteria)
        by = self._criterion(st.by, unit, ">", 0.0) if st.by is not None else None
        if st.top is not None and st.top < 1:
            self.error("`top` takes at least 1", st.pos)
        window = self._select_window(st)
        self.lookup(st.probe, "probe")
        if not self.declare(st.name, "selection"):
            return
        self.scope.selections[st.name.text] = p.Selection(
            name=st.name.text,
            unit=unit,
            criteria=tuple(c for c in criteria if c is not None),
            top=st.top,
            by=by,
            window=window,
            probe=st.probe.text,
            text=self.source_text(st.pos),
            source=p.SourceRef(uri=st.pos.uri, line=st.pos.line, column=st.pos.column),
            **fields,
        )

    def _select_units(self, st: s.SelectDecl) -> tuple[Any, dict[str, Any]]:
        if isinstance(st.units, s.Mlp):
            self.check_layer(st.units.layer, st.units.pos)
            return "neurons", {"layer": st.units.layer}
        if isinstance(st.units, s.HeadUnits):
            if st.top != 1 or st.by is None:
                self.error(
                    "a heads selection binds one head per run (a role): write `top 1 by QUANTITY`",
                    st.pos,
                )
            if st.units.layer is None:
                return "heads", {"layer": None}
            found = re.fullmatch(r"L([0-9]+)", st.units.layer.text)
            if found is None:
                self.error(
                    "write `L1 heads` (a layer's heads) or `heads` (every layer's)", st.units.pos
                )
                return "heads", {"layer": None}
            self.check_layer(int(found[1]), st.units.layer.pos)
            return "heads", {"layer": int(found[1])}
        kind = self.lookup(st.units, "basis", "family")
        if kind == "family":
            family = self.scope.families.get(st.units.text)
            if family is not None:
                return "features", {"basis": family.basis, "among": family.ids}
        return "features", {"basis": st.units.text if kind == "basis" else ""}

    def _criterion(self, call: s.Call, unit: str, op: Any, value: float) -> p.Criterion | None:
        allowed = SELECT_QUANTITIES[unit]
        name = call.name.text
        if name not in allowed:
            self.error(
                f"`{name}` cannot choose {unit}; use {', '.join(f'`{a}`' for a in allowed)}",
                call.pos,
            )
            return None
        features = None
        if unit == "heads":
            return self._head_criterion(call, op, value)
        if name == "drive":
            args = call.args or ()
            if len(args) != 1 or args[0].keyword is not None:
                self.error(
                    "write `drive(FEATURES)`: the feature score whose drive is measured", call.pos
                )
                return None
            features = self.feature_ref(args[0].value, "`drive`")
        elif call.args is not None:
            self.error(f"`{name}` takes no arguments in a `select`", call.pos)
        return p.Criterion(quantity=name, features=features, op=op, value=value)

    def _head_criterion(self, call: s.Call, op: Any, value: float) -> p.Criterion | None:
        """`attention(from=answer, to=match_value)`: a head quantity without its head."""
        name = call.name.text
        spec = QUANTITIES[name]
        roles: dict[str, str] = {}
        for arg in call.args or ():
            key = arg.keyword.text if arg.keyword is not None else None
            if key not in spec.roles or not isinstance(arg.value, s.Name):
                accepted = ", ".join(f"`{r}=ROLE`" for r in spec.roles) or "no arguments"
                self.error(f"`{name}` ranks heads by {accepted} here", arg.pos)
                return None
            self.check_role(arg.value)
            roles[key] = arg.value.text
        for missing in [r for r in spec.required_roles if r not in roles]:
            self.error(f"`{name}` needs `{missing}=ROLE`", call.pos)
            return None
        return p.Criterion(quantity=name, op=op, value=value, roles=roles)

    def _select_window(self, st: s.SelectDecl) -> p.RangeWindow:
        if isinstance(st.window, s.Name):
            if self.lookup(st.window, "window"):
                found = self.scope.windows.get(st.window.text)
                if isinstance(found, p.RangeWindow):
                    return found
                self.error(
                    "a `select` needs a fixed window (`a .. b`), not a birth window", st.window.pos
                )
            return p.RangeWindow(name=st.window.text, start=None, end=None)
        w = st.window
        decl = s.WindowDecl(st.pos, s.Name(st.pos, f"{st.name.text}_window"), w)
        found = self.window(decl)
        assert isinstance(found, p.RangeWindow)
        if self.signature is not None and w.start is not None and w.end is not None:
            steps = [x for x in self.signature["checkpoints"] if w.start <= x <= w.end]
            if len(steps) < 2:
                self.error(
                    f"the window {w.start} .. {w.end} holds {len(steps)} checkpoint(s); "
                    "a selection needs 2",
                    w.pos,
                )
        return found

    # --- references -----------------------------------------------------------------------

    def feature_ref(self, n: Any, what: str) -> p.FeatureNode | p.SelectionNode | None:
        """Features named by `l2.f27`, `l2[27, 54]`, a family or a feature selection."""
        if isinstance(n, s.Feature) and n.index is not None:
            if self._basis(n.basis):
                self._check_ids((n.index,), n.basis.text, n.pos)
            return p.FeatureNode(basis=n.basis.text, ids=(n.index,))
        if isinstance(n, s.FeatureSet):
            if len(set(n.indices)) != len(n.indices):
                self.error("a feature is listed twice", n.pos)
            if self._basis(n.basis):
                self._check_ids(n.indices, n.basis.text, n.pos)
            return p.FeatureNode(basis=n.basis.text, ids=n.indices)
        if isinstance(n, s.Name):
            kind = self.lookup(n, "family", "selection")
            if kind == "family":
                return self.scope.families.get(n.text)
            if kind == "selection":
                sel = self.scope.selections.get(n.text)
                if sel is not None and sel.unit != "features":
                    self.error(
                        f"selection `{n.text}` chose {sel.unit}; {what} needs features", n.pos
                    )
                return p.SelectionNode(name=n.text)
            return None
        self.error(f"{what} takes features (`l2.f27`, `l2[27, 54]` or a family)", n.pos)
        return None

    def _basis(self, ref: s.Name) -> bool:
        return self.lookup(ref, "basis") is not None

    def _check_ids(self, ids: tuple[int, ...], basis: str, pos: SourcePosition) -> None:
        width = self.scope.basis_width.get(basis)
        bad = [i for i in ids if width is not None and i >= width]
        if bad:
            self.error(
                f"feature {bad[0]} is out of range: basis `{basis}` has {width} features "
                f"(0..{width - 1})",
                pos,
            )

    def named_node(self, n: s.Name) -> Any:
        """A bare name used as a path node or intervention target: a family or a selection."""
        kind = self.lookup(n, "family", "selection")
        if kind == "family":
            return self.scope.families.get(n.text)
        if kind == "selection":
            return p.SelectionNode(name=n.text)
        return None

    def error_node(self, n: s.Feature) -> p.ErrorNode:
        self._basis(n.basis)
        return p.ErrorNode(basis=n.basis.text)

    def check_feature_path(self, nodes: tuple[Any, ...], pos: SourcePosition) -> None:
        """Where features and error terms may stand in a path (see the module docstring)."""
        kinds = [self._node_kind(x) for x in nodes]
        if "features" not in kinds and "error" not in kinds:
            return
        ok = len(nodes) == 2 and (
            (kinds[0] in ("features", "error") and isinstance(nodes[1], p.UnembedNode))
            or (kinds[1] == "features" and kinds[0] == "component")
        )
        if not ok:
            self.error(
                "features stand in a path as `F -> unembed` (their direct contribution) or "
                "`COMPONENT -> F` (a component's write read by their encoder); the error term "
                "as `l2.error -> unembed`",
                pos,
            )

    def _node_kind(self, node: Any) -> str:
        if isinstance(node, p.FeatureNode):
            return "features"
        if isinstance(node, p.ErrorNode):
            return "error"
        if isinstance(node, p.SelectionNode):
            sel = self.scope.selections.get(node.name)
            return "features" if sel is not None and sel.unit == "features" else "component"
        if isinstance(node, p.EmbedNode | p.PosNode | p.HeadNode | p.MlpNode | p.NeuronsNode):
            return "component"
        return "other"

    def score_target(self, call: s.Call, quantity: str) -> p.QuantityExpr | None:
        """`activation(F)` as the argument of alignment / update_alignment."""
        if call.name.text not in SCORES:
            self.error(
                f"`{quantity}` takes a path, a circuit or a feature score "
                f"({', '.join(f'`{x}(F)`' for x in SCORES)})",
                call.pos,
            )
            return None
        args = call.args or ()
        if len(args) != 1 or args[0].keyword is not None:
            self.error(f"write `{call.name.text}(FEATURES)`", call.pos)
            return None
        features = self.feature_ref(args[0].value, f"`{call.name.text}`")
        return p.QuantityExpr(name=call.name.text, features=features)

    # --- discovery and testing ------------------------------------------------------------

    def check_tested_on_other_data(self, terms: list[s.Term], probe: str) -> None:
        """A selection may not be tested on the split of the probe that chose it."""
        for term in terms:
            on = term.probe.text if term.probe is not None else probe
            reads = {on} | {
                a.value.text
                for c in term.interventions
                for a in (c.args or ())
                if a.keyword is not None
                and a.keyword.text == "from"
                and isinstance(a.value, s.Name)
            }
            for name, pos in _selection_refs(term, self.scope):
                chosen = self.scope.selections[name].probe
                split = self._split(chosen)
                for read in reads:
                    if split is not None and self._split(read) == split:
                        self.error(
                            f"selection `{name}` was chosen on probe `{chosen}` (split "
                            f"{split}); testing it on `{read}` reads the same split: discovery "
                            "and testing must not share data",
                            pos,
                        )
                        break

    def _split(self, probe: str) -> str | None:
        found = self.scope.probes.get(probe)
        return found.split if found is not None else None


def _selection_refs(term: s.Term, scope: Any) -> list[tuple[str, SourcePosition]]:
    """Every selection a term reads (by name, or inside a declared path or circuit), with the
    position of the name that brings it in."""
    out: list[tuple[str, SourcePosition]] = []
    stack: list[Any] = [term.call, *term.interventions]
    while stack:
        item = stack.pop()
        if isinstance(item, s.Call):
            stack.extend(a.value for a in item.args or ())
        elif isinstance(item, s.PathExpr):
            stack.extend(item.nodes)
        elif isinstance(item, s.Name):
            if item.text in scope.selections:
                out.append((item.text, item.pos))
            paths = [scope.paths[n] for n in scope.circuits.get(item.text, ()) if n in scope.paths]
            if item.text in scope.paths:
                paths.append(scope.paths[item.text])
            for path in paths:
                out += [
                    (node.name, item.pos)
                    for node in path.nodes
                    if isinstance(node, p.SelectionNode)
                ]
    return out
