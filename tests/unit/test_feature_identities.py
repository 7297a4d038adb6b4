"""Identities the feature layer must satisfy exactly, on random models and random bases.

- At every kind of site, the features' and the error term's contributions plus the components
  writing after the site sum to the linearised margin (float64, 1e-10 relative).
- The lineages of every writer before a residual site sum to the site's encoder input.
- Zero-ablating features in the basis equals subtracting their decoded write by hand (the same
  computation: the same bytes); patching features from their own checkpoint changes nothing.
- The per-neuron drives of an MLP plus its output bias's part sum to the MLP's scoped drive.
- A selection's feature means, from the answers-only pass, equal the full pass's up to float
  rounding (`tests.numerics`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hypodsl import plan as p
from runner.engine.selections import feature_means, layer_drives, neuron_drives, score_fn
from runner.measure import batched
from runner.measure import features as ft
from runner.measure import gradients as gr
from runner.measure import interventions as iv
from runner.measure.attribution import direct_logit_attribution, linearised_margin
from runner.measure.circuits import circuit_values, names_for
from runner.measure.probe import clean_run
from runner.model.hooks import hooks
from tests.numerics import assert_equivalent
from tests.unit.measure_helpers import WIDTH, random_basis
from tests.unit.test_measure_identities import CONFIG, random_model

pytestmark = pytest.mark.numerics  # run again under other CPU kernels (Makefile)


@pytest.fixture(scope="module")
def probe(small_arrays):
    from tests.unit.measure_helpers import probe_of

    return probe_of(small_arrays, "test_iid", 24)


# Per site: which direct-attribution terms the basis replaces (the rest are kept).
SITES = {
    "blocks.1.hook_resid_post": lambda name: name.startswith(("embed", "pos", "L0.", "L1.")),
    "blocks.1.hook_mlp_out": lambda name: name in ("L1.mlp", "L1.mlp_bias"),
    "blocks.2.mlp.hook_post": lambda name: name == "L2.mlp",
    "ln_final.hook_normalized": lambda name: name != "ln_final.bias",
}  # fmt: skip


@pytest.mark.parametrize("site", sorted(SITES))
def test_features_and_error_and_the_rest_sum_to_the_linearised_margin(probe, site):
    model = random_model(1, torch.float64)
    d_in = CONFIG.d_ff if site.endswith("hook_post") else CONFIG.d_model
    basis = random_basis(site, d_in, 2)
    bases = {"b": basis}
    with torch.no_grad():
        run = clean_run(model, probe, names_for(model, bases))
        m_lin = linearised_margin(run.logits, probe.target)
        kept = sum(
            v for name, v in direct_logit_attribution(model, run, probe).items()
            if not SITES[site](name)
        )  # fmt: skip
        halves = [
            (p.FeatureNode(basis="b", ids=tuple(range(0, 20))), p.UnembedNode()),
            (p.FeatureNode(basis="b", ids=tuple(range(20, WIDTH))), p.UnembedNode()),
            (p.ErrorNode(basis="b"), p.UnembedNode()),
        ]
        total = circuit_values(model, probe, run, halves, bases) + kept
    assert torch.allclose(total, m_lin, rtol=1e-10, atol=1e-10 * float(m_lin.abs().max()))
    assert float(total.abs().sum()) > 0


@pytest.mark.parametrize("site", ["blocks.1.hook_resid_mid", "ln_final.hook_normalized"])
def test_the_lineages_of_every_earlier_writer_sum_to_the_encoder_input(probe, site):
    model = random_model(3, torch.float64)
    basis = random_basis(site, CONFIG.d_model, 4)
    ids = (3, 7, 11)
    with torch.no_grad():
        run = clean_run(model, probe, names_for(model, {"b": basis}))
        writes = ft.all_writes(model, run, probe)
        earlier = ["embed", "pos", "L0.attn_bias", "L0.mlp", "L0.mlp_bias", "L1.attn_bias"]
        earlier += [f"L{layer}.H{h}" for layer in (0, 1) for h in range(CONFIG.n_heads)]
        if site == "ln_final.hook_normalized":
            earlier = list(writes)
        total = sum(ft.lineage_of_write(run, probe, basis, writes[n], ids) for n in earlier)
        x = ft.site_vectors(run, probe, basis)  # at the final norm: (x − mean) / scale
        expected = (x @ basis.sae.W_enc[:, list(ids)]).sum(dim=-1)
        head = ft.lineage(model, run, probe, basis, p.HeadNode(layer=0, head=1), ids)
        by_hand = ft.lineage_of_write(run, probe, basis, writes["L0.H1"], ids)
    assert torch.allclose(total, expected, rtol=1e-10, atol=1e-10 * float(expected.abs().max()))
    assert torch.equal(head, by_hand)


def test_zero_ablation_in_the_basis_is_subtracting_the_decoded_write(probe):
    model = random_model(5)
    basis = random_basis("blocks.1.hook_resid_post", CONFIG.d_model, 6, torch.float32)
    ids = (0, 5, 9, 30)
    edit = ft.basis_edit(basis, ids, ft.zero_source())
    ablated = iv.run_edited(model, probe, [edit])

    def by_hand(x: torch.Tensor, name: str) -> torch.Tensor:
        f = basis.sae.encode(x)[..., list(ids)]
        return x - f @ basis.sae.W_dec[list(ids)]

    with torch.no_grad(), hooks(model, [("blocks.1.hook_resid_post", by_hand)]):
        expected = probe.at_answers(model(probe.tokens))
    assert torch.equal(ablated.logits, expected)
    clean = clean_run(model, probe, [])
    assert not torch.equal(ablated.logits, clean.logits)


def test_patching_features_from_their_own_checkpoint_changes_nothing(probe):
    model = random_model(7)
    basis = random_basis("blocks.0.hook_resid_post", CONFIG.d_model, 8, torch.float32)
    ids = tuple(range(WIDTH))
    with torch.no_grad():
        site = clean_run(model, probe, [basis.info.site])[basis.info.site]
        same = ft.fixed_source(ft.reference_features(basis, site, ids))
        patched = iv.run_edited(model, probe, [ft.basis_edit(basis, ids, same)])
        clean = clean_run(model, probe, [])
    assert torch.equal(patched.logits, clean.logits)


def test_per_neuron_drives_and_the_output_bias_sum_to_the_mlps_drive(probe):
    model, later = random_model(9), random_model(10)
    basis = random_basis("blocks.2.hook_resid_pre", CONFIG.d_model, 11, torch.float32)
    ids = (1, 2, 3, 4)
    score = score_fn(probe, basis, ids)
    drives = neuron_drives(model, later, probe, 1, score)
    mlp, after = model.block(1).mlp, later.block(1).mlp
    (g_bias,) = torch.autograd.grad(score(model).mean(), [mlp.c_proj.bias])
    bias_part = float((g_bias * (after.c_proj.bias - mlp.c_proj.bias)).sum().detach())
    values = lambda m, run: ft.activation(run, probe, basis, ids)  # noqa: E731
    whole = gr.update_alignment(model, later, probe, values, {"b": basis}, p.MlpNode(layer=1))
    assert drives.shape == (CONFIG.d_ff,)
    assert drives.sum() + bias_part == pytest.approx(float(whole.predicted.mean()), rel=1e-5)
    some = p.NeuronsNode(layer=1, indices=(0, 5, 7))
    part = gr.update_alignment(model, later, probe, values, {"b": basis}, some)
    assert drives[[0, 5, 7]].sum() == pytest.approx(float(part.predicted.mean()), rel=1e-5)


def test_drives_of_several_layers_from_one_pass_equal_each_layers_own(probe):
    model, later = random_model(9), random_model(10)
    basis = random_basis("blocks.2.hook_resid_post", CONFIG.d_model, 11, torch.float32)
    score = score_fn(probe, basis, (1, 2, 3, 4))
    together = layer_drives(model, later, probe, (0, 2), score)
    for layer in (0, 2):
        alone = neuron_drives(model, later, probe, layer, score)
        assert np.array_equal(together[layer], alone)
        assert np.abs(alone).max() > 0


@pytest.mark.parametrize("quantity", ["activation", "active", "contribution"])
@pytest.mark.parametrize("site", [*sorted(SITES), "blocks.2.hook_resid_post"])
def test_feature_means_from_the_answers_only_pass_equal_the_full_pass(
    probe, site, quantity, monkeypatch
):
    calls = []
    answer_run = batched.answer_run
    monkeypatch.setattr(
        batched, "answer_run", lambda *a, **k: calls.append(k["queries"]) or answer_run(*a, **k)
    )
    model = random_model(12)
    d_in = CONFIG.d_ff if site.endswith("hook_post") else CONFIG.d_model
    basis = random_basis(site, d_in, 13, torch.float32)
    with torch.no_grad():
        full = clean_run(model, probe, [site, "ln_final.hook_scale"])
        f = ft.encode(basis, ft.site_vectors(full, probe, basis))
        u = ft.site_readout(model, full, probe, site)
        expected = {
            "activation": f.mean(dim=0),
            "active": (f > 0).to(torch.float32).mean(dim=0),
            "contribution": (f * (basis.sae.W_dec @ u.T).T).mean(dim=0),
        }[quantity]
    means = feature_means(model, probe, basis, quantity)
    assert calls == [True]
    # float32 values summed in float64: compared at float32's tolerance
    assert_equivalent(torch.from_numpy(means).float(), expected, (site, quantity))
    assert np.abs(means).max() > 0
