"""The non-finite check reads a few witnesses, yet finds NaN or Inf wherever it is planted: each
cached activation of a clean pass is poisoned in turn (one element, NaN, +inf or -inf) and the
check must report the first faulty activation in name order, as reading every one would."""

from __future__ import annotations

import pytest
import torch

from runner.measure import batched
from runner.measure.circuits import names_for
from runner.measure.finite import non_finite_site, witnesses
from runner.measure.probe import clean_run
from runner.model.hooks import hooks, run_with_cache
from tests.unit.measure_helpers import probe_of
from tests.unit.test_batched import random_model

N_LAYERS = 3


def cached_names(model) -> list[str]:
    """What the engine's shared clean pass caches, plus keys, queries, pre-activations and
    LayerNorm outputs, which no witness covers."""
    names = set(names_for(model, {})) | set(batched.restart_names(model))
    for layer in range(N_LAYERS):
        block = f"blocks.{layer}."
        names |= {block + x for x in ("attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_q",
                                       "attn.hook_k", "attn.hook_v", "mlp.hook_pre",
                                       "ln1.hook_scale", "ln2.hook_normalized")}  # fmt: skip
    return sorted(names | {"ln_final.hook_normalized"})


@pytest.fixture(scope="module")
def setup(small_arrays):
    model = random_model(3)
    probe = probe_of(small_arrays, "test_iid", 6)
    return model, probe, cached_names(model)


def poisoned_run(model, probe, names, target: str, value: float, seed: int):
    """A clean pass with one element of `target` set to `value`, caching `names`."""
    gen = torch.Generator().manual_seed(seed)

    def poison(x: torch.Tensor, name: str) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        flat = out.view(-1)
        index = int(torch.randint(flat.numel(), (1,), generator=gen))
        if name.endswith("hook_attn_scores"):  # a position the mask leaves visible
            visible = torch.isfinite(flat).nonzero().flatten()
            index = int(visible[index % len(visible)])
        flat[index] = value
        return out

    with torch.no_grad(), hooks(model, [(target, poison)]):
        logits, cache = run_with_cache(model, probe.tokens, names)
    return type(clean_run(model, probe, []))(probe.at_answers(logits), cache)


def first_fault_by_reading_everything(run) -> str | None:
    for name in ["logits", *sorted(run.cache)]:
        x = run.logits if name == "logits" else run[name]
        if name.endswith("hook_attn_scores"):
            if bool(torch.isnan(x).any() or torch.isposinf(x).any()):
                return name
        elif not bool(torch.isfinite(x).all()):
            return name
    return None


def test_a_clean_pass_is_finite_and_most_activations_are_not_read(setup):
    model, probe, names = setup
    with torch.no_grad():
        run = clean_run(model, probe, names)
    assert non_finite_site(run) is None
    read = witnesses(run.cache)
    assert "blocks.2.hook_resid_post" in read
    skipped = (
        "blocks.0.attn.hook_z", "blocks.1.attn.hook_pattern", "blocks.2.mlp.hook_post",
        "blocks.0.attn.hook_attn_scores", "hook_embed", "blocks.1.hook_resid_mid",
    )  # fmt: skip
    assert not set(skipped) & set(read)
    for kept in ("ln_final.hook_scale", "blocks.1.attn.hook_k", "blocks.0.ln1.hook_scale"):
        assert kept in read


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_poisoned_activation_anywhere_is_found(setup, value):
    model, probe, names = setup
    checked = 0
    for seed, target in enumerate(names):
        if target.endswith("hook_attn_scores") and value == float("-inf"):
            continue  # -inf is what the causal mask writes there: not a fault
        run = poisoned_run(model, probe, names, target, value, seed)
        expected = first_fault_by_reading_everything(run)
        if expected is None:  # e.g. -inf into a key that only masked scores read
            continue
        assert non_finite_site(run) == expected, target
        checked += 1
    assert checked >= len(names) - 4
