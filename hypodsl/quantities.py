"""What each quantity and intervention accepts, for the compiler's checks.

The names a claim can measure and the arguments each takes. The runner implements them; the
language only needs their shapes, and accepts nothing the runner does not measure
(tests/unit/test_catalogue.py checks that both agree). See docs/language.md for definitions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantitySpec:
    component: bool = False  # first positional argument: a head (`L1.H2`)
    path: bool = False  # first positional argument: a path or circuit
    roles: tuple[str, ...] = ()  # keyword arguments that name roles
    required_roles: tuple[str, ...] = ()
    group: bool = False  # `by=GROUP`
    features: bool = False  # first positional argument: features (`l2.f27`, a family)
    score: bool = False  # the first argument may be a feature score: `activation(F)`
    scope: bool = False  # `scope=COMPONENT`: only that component's parameters
    intervened: bool = False  # measured `with ablate(...)` / `with patch(...)`


QUANTITIES: dict[str, QuantitySpec] = {
    "accuracy": QuantitySpec(intervened=True),
    "loss": QuantitySpec(intervened=True),
    "margin": QuantitySpec(intervened=True),
    "attention": QuantitySpec(component=True, roles=("from", "to"), required_roles=("from", "to")),
    "qk_gap": QuantitySpec(
        component=True, roles=("from", "to", "contrast"), required_roles=("from", "to")
    ),
    "ov_copy": QuantitySpec(component=True),
    "contribution": QuantitySpec(path=True),
    "share": QuantitySpec(path=True),
    "alignment": QuantitySpec(path=True, score=True),
    "update_alignment": QuantitySpec(path=True, score=True, scope=True),
    "gram": QuantitySpec(group=True),
    "activation": QuantitySpec(features=True, intervened=True),
    "active": QuantitySpec(features=True, intervened=True),
}
# Forms the language once had or a reader may expect, which this runner does not measure: the
# compiler says why instead of "unknown".
NOT_MEASURED = {
    "alignment_cosine": "it is one number per probe, with no per-read values to bootstrap; "
    "compare `alignment` values instead",
}
GRAM_NOT_MEASURED = {
    "split": "it compares examples of several probes, and the runner measures one probe at a time",
}
SCORES = ("activation",)  # what alignment(...) and update_alignment(...) can differentiate
# What a `select` may rank or threshold, per unit: an MLP neuron's drive of a feature score
# (∇θn score · Δθn over its parameter slice), a feature's mean activation, active fraction or
# direct contribution to the answer margin, or a head's attention, QK gap or OV copying.
SELECT_QUANTITIES = {
    "neurons": ("drive",),
    "features": ("activation", "active", "contribution"),
    "heads": ("attention", "qk_gap", "ov_copy"),  # each head's value, as the quantity measures it
}
GRAM_GROUPS = ("key", "value", "pair")
ABLATION_METHODS = ("zero", "mean", "resample")
INTERVENTIONS = ("ablate", "patch")
