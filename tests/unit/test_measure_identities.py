"""Identities the measurement library must satisfy exactly (or to first order, as stated)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hypodsl import plan as p
from runner.measure import batched, behaviour, sweep
from runner.measure import gradients as gr
from runner.measure import interventions as iv
from runner.measure import per_example as pe
from runner.measure.attribution import direct_logit_attribution, linearised_margin
from runner.measure.attribution_patching import attribution_patching
from runner.measure.paths import PathError, PathPatcher, check_path, path_names
from runner.measure.probe import clean_run
from runner.measure.weights import head_output
from runner.model.transformer import ModelConfig, Transformer
from runner.stats.births import birth
from tests.unit.measure_helpers import probe_of

pytestmark = pytest.mark.numerics  # run again under other CPU kernels (Makefile)

CONFIG = ModelConfig(d_model=32, n_layers=3, n_heads=2, d_ff=64)


def random_model(seed: int, dtype=torch.float32) -> Transformer:
    """Random weights large enough that every component matters."""
    torch.manual_seed(seed)
    model = Transformer(CONFIG).to(dtype)
    with torch.no_grad():
        for w in model.parameters():
            w.add_(torch.randn_like(w) * 0.3)
    return model


@pytest.fixture(scope="module")
def probe(small_arrays):
    return probe_of(small_arrays, "test_iid", 24)


@pytest.fixture(scope="module")
def model64():
    return random_model(0, torch.float64)


def head(layer: int, h: int) -> p.HeadNode:
    return p.HeadNode(layer=layer, head=h)


def test_contributions_sum_to_the_linearised_margin(probe):
    """Exact up to rounding: in float64 to 1e-10 per read; in float32 to 1e-5 of the summed
    margin, and per read to 1e-5 of the summed magnitudes of its terms (float32 rounding of a
    sum of terms near 10 is about 1e-6 absolute, so a read whose margin is near 0 cannot be held
    to 1e-5 of its own margin)."""
    for seed in range(3):
        for dtype in (torch.float32, torch.float64):
            model = random_model(seed, dtype)
            with torch.no_grad():
                run = clean_run(model, probe, path_names(model))
                terms = direct_logit_attribution(model, run, probe)
                total = sum(terms.values())
                scale = sum(t.abs() for t in terms.values())
                target = linearised_margin(run.logits, probe.target)
            error = (total - target).abs()
            if dtype == torch.float64:
                assert (error / target.abs()).max().item() <= 1e-10
            else:
                assert ((total - target).sum() / target.sum()).abs().item() <= 1e-5
                assert (error / scale).max().item() <= 1e-5


def test_single_hop_path_patching_equals_direct_attribution(model64, probe):
    with torch.no_grad():
        run = clean_run(model64, probe, path_names(model64))
        dla = direct_logit_attribution(model64, run, probe)
        patcher = PathPatcher(model64, probe, run)
        for name, node in [("L1.H0", head(1, 0)), ("L2.mlp", p.MlpNode(layer=2))]:
            via_path = patcher.contribution([node, p.UnembedNode()])
            torch.testing.assert_close(via_path, dla[name], rtol=0, atol=1e-10)
        embed = patcher.contribution([p.EmbedNode(), p.UnembedNode()])
        torch.testing.assert_close(embed, dla["embed"], rtol=0, atol=1e-10)


def test_paths_read_at_the_answers_equal_the_change_computed_everywhere(model64, probe):
    """`X -> unembed` and `X -> MLP -> unembed` compute the sender's change at the answer
    positions only; here it is computed at every position and read at the answers."""
    senders = [
        p.EmbedNode(), p.PosNode(), head(0, 1), p.MlpNode(layer=0),
        p.NeuronsNode(layer=0, indices=(3, 7)),
        p.HeadQKNode(layer=1, head=1, from_role="answer", to_role="match_value"),
    ]  # fmt: skip
    with torch.no_grad():
        run = clean_run(model64, probe, path_names(model64))
        patcher = PathPatcher(model64, probe, run, seed=3)
        for sender in senders:
            methods = ["zero"] if isinstance(sender, p.HeadQKNode) else ["zero", "mean", "resample"]
            for method in methods:
                everywhere = patcher.sender_delta(sender, method)
                direct = -(probe.at_answers(everywhere) * patcher.u).sum(dim=-1)
                got = patcher.contribution([sender, p.UnembedNode()], method)
                torch.testing.assert_close(got, direct, rtol=0, atol=1e-10)
                if not (isinstance(sender, p.PosNode) and method != "zero"):  # the same everywhere
                    assert direct.abs().max() > 1e-3  # the sender matters on this model
                mlp = p.MlpNode(layer=2)
                through = -(probe.at_answers(patcher.receive(mlp, everywhere)) * patcher.u)
                got = patcher.contribution([sender, mlp, p.UnembedNode()], method)
                torch.testing.assert_close(got, through.sum(dim=-1), rtol=0, atol=1e-10)
    for roles in [("answer", "match_value"), ("answer", "other_key"), ("read_op", "match_key")]:
        everywhere = iv.qk_restriction_mask(probe, *roles)[probe.read_seq, probe.answer]
        assert torch.equal(iv.qk_restriction_at_answers(probe, *roles), everywhere)


def test_patching_a_component_with_its_own_activation_changes_nothing(model64, probe):
    site = iv.site_of(head(1, 1))
    with torch.no_grad():
        clean = clean_run(model64, probe, [site.hook])
        same_model = iv.run_edited(model64, probe, [iv.replace_edit(site, clean[site.hook], probe)])
        source = iv.patch_source(clean[site.hook], probe.n_seq, probe.n_pos, "the probe itself")
        same_probe = iv.run_edited(model64, probe, [iv.replace_edit(site, source, probe)])
    assert torch.equal(same_model.logits, clean.logits)
    assert torch.equal(same_probe.logits, clean.logits)


def test_zero_ablating_a_head_equals_removing_its_output_by_hand(model64, probe):
    site = iv.site_of(head(0, 1))
    with torch.no_grad():
        ablated = iv.run_edited(model64, probe, [iv.replace_edit(site, torch.zeros(1), probe)])
        z = {}

        def remember(x, name):
            z["z"] = x

        def remove(x, name):
            return x - head_output(model64, 0, z["z"], 1)

        edits = [("blocks.0.attn.hook_z", remember), ("blocks.0.hook_attn_out", remove)]
        by_hand = iv.run_edited(model64, probe, edits)
    torch.testing.assert_close(ablated.logits, by_hand.logits, rtol=0, atol=1e-10)


def test_batched_sweep_equals_one_forward_per_ablation(model64, probe):
    sites = [iv.site_of(head(layer, h)) for layer in range(3) for h in range(2)]
    sites += [iv.site_of(p.MlpNode(layer=2)), iv.site_of(p.NeuronsNode(layer=0, indices=(3, 7)))]
    with torch.no_grad():
        run = clean_run(model64, probe, sweep.sweep_names(model64))
        sources = {
            s.label: iv.mean_source(run[s.hook], probe.token_mask(), probe.n_pos) for s in sites
        }
        batched = sweep.ablation_sweep(model64, probe, run, sites, sources, max_rows=50)
        for site in sites:
            edit = iv.replace_edit(site, sources[site.label], probe)
            one = iv.run_edited(model64, probe, [edit]).behaviour(probe)
            margin = batched[site.label]["margin"]
            torch.testing.assert_close(margin, one["margin"], atol=1e-9, rtol=0)


def test_attribution_patching_is_the_directional_derivative(model64, probe):
    scores = attribution_patching(model64, probe)
    site = iv.site_of(head(1, 0))
    eps = 1e-6
    with torch.no_grad():
        clean = clean_run(model64, probe, [site.hook, "blocks.0.mlp.hook_post"])
        for kind in ("zero", "mean"):
            z = clean[site.hook]
            target = (
                torch.zeros_like(z)
                if kind == "zero"
                else iv.mean_source(z, probe.token_mask(), probe.n_pos).expand_as(z)
            )
            nudged = z + eps * (target - z)
            moved = iv.run_edited(model64, probe, [iv.replace_edit(site, nudged, probe)])
            change = moved.behaviour(probe)["margin"] - clean.behaviour(probe)["margin"]
            slope = change.sum() / eps
            estimate = scores.heads[kind][1, :, 0].sum()
            assert abs(slope.item() - estimate.item()) <= 1e-4 * max(1.0, abs(estimate.item()))


def test_the_answers_only_loss_and_its_gradient_equal_the_full_forward_pass(model64, probe):
    """`answer_losses` runs the last block and the unembedding at the answers only, in windows
    of sequences; the full forward pass reads the same losses at every position."""
    full = behaviour.per_read(probe.at_answers(model64(probe.tokens)), probe.target)["loss"]
    for max_rows in (3, 10_000):
        losses = behaviour.per_read(batched.answer_logits(model64, probe, max_rows), probe.target)[
            "loss"
        ]
        torch.testing.assert_close(losses, full, rtol=0, atol=1e-12)
    via_answers = gr.flat_grad(gr.answer_losses(model64, probe).mean(), model64)
    via_full = gr.flat_grad(full.mean(), model64)
    assert via_full.abs().max() > 1e-3
    torch.testing.assert_close(via_answers, via_full, rtol=0, atol=1e-12)


def test_alignment_predicts_the_change_after_a_small_sgd_step(model64, probe):
    path = [[head(2, 1), p.UnembedNode()]]
    result = gr.alignment(model64, probe, path)
    assert result.per_read.mean().item() == pytest.approx(result.alignment, rel=1e-9)
    eta = 1e-4
    before = gr.contributions(model64, probe, path).mean().item()
    descent = gr.flat_grad(gr.answer_losses(model64, probe).mean(), model64)
    stepped = random_model(0, torch.float64)
    with torch.no_grad():
        offset = 0
        for w in gr.parameters(stepped):
            w -= eta * descent[offset : offset + w.numel()].view_as(w)
            offset += w.numel()
    after = gr.contributions(stepped, probe, path).mean().item()
    assert abs((after - before) / eta - result.alignment) < 1e-2 * abs(result.alignment)
    update = gr.update_alignment(model64, stepped, probe, path)
    predicted, observed = update.predicted.mean().item(), update.observed.mean().item()
    assert abs(predicted - observed) < 1e-2 * abs(observed)
    assert predicted == pytest.approx(eta * result.alignment, rel=1e-9)


def test_alignment_without_the_cosine_gives_the_same_values(model64, probe):
    path = [[head(2, 1), p.UnembedNode()]]
    full = gr.alignment(model64, probe, path)
    lean = gr.alignment(model64, probe, path, cosine=False)
    assert torch.equal(full.per_read, lean.per_read)
    assert lean.alignment == pytest.approx(full.alignment, rel=1e-9) and np.isnan(lean.cosine)


def test_multi_hop_alignment_is_differentiable(model64, probe):
    path = [[head(0, 0), p.HeadInputNode(layer=1, head=1, input="k")]]
    result = gr.alignment(model64, probe, path)
    assert np.isfinite(result.alignment) and -1 <= result.cosine <= 1


def _all_gradients(model, probe, method):
    n_params = sum(w.numel() for w in model.parameters())
    out = torch.zeros(len(probe), n_params, dtype=torch.float64)
    for reads, grads in pe.per_example_gradients(model, probe, method, chunk=40):
        out[reads] = grads
    return out


def test_per_example_gradients_agree_across_methods(model64, probe):
    loop = _all_gradients(model64, probe, "loop")
    for method in ("vmap", "einsum"):
        assert (_all_gradients(model64, probe, method) - loop).abs().max().item() <= 1e-6
    # and with the gradient of the summed loss
    total = gr.flat_grad(gr.answer_losses(model64, probe).sum(), model64)
    torch.testing.assert_close(loop.sum(dim=0), total, rtol=0, atol=1e-8)


def test_gram_summary_equals_the_explicit_gram_matrix(model64, probe):
    grads = _all_gradients(model64, probe, "einsum")
    gram = pe.gram_matrix(grads)
    labels = pe.group_labels(probe, "key")
    summary = pe.gram_summary(model64, probe, labels, chunk=40)
    same = torch.as_tensor(labels[:, None] == labels[None, :])
    off = ~torch.eye(len(labels), dtype=torch.bool)
    within = (gram * (same & off)).sum(1) / (same & off).sum(1)
    between = (gram * ~same).sum(1) / (~same).sum(1)
    ok = (same & off).sum(1) > 0
    torch.testing.assert_close(summary["within"][ok], within[ok], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(summary["between"], between, rtol=1e-9, atol=1e-9)


def test_a_read_alone_in_its_group_has_no_within_value_not_an_infinite_one(model64, probe):
    model = copy.deepcopy(model64).float()  # float32, as studies run: rounding is visible
    labels = pe.group_labels(probe, "key").copy()
    labels[0] = labels.max() + 1  # read 0 alone in its group
    summary = pe.gram_summary(model, probe, labels, chunk=40)
    group = np.unique(labels, return_inverse=True)[1]
    sizes = np.bincount(group)[group]
    assert torch.isnan(summary["within"][0])  # 0 / 0: both dots are the same sum
    assert torch.isfinite(summary["within"][torch.as_tensor(sizes > 1)]).all()
    assert torch.isfinite(summary["between"]).all()


def test_sources():
    perm = iv.derangement(50, seed=4)
    assert sorted(perm.tolist()) == list(range(50))
    assert (perm != torch.arange(50)).all()
    act = torch.arange(12.0).view(3, 4, 1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    mean = iv.mean_source(act, mask, 5)
    assert mean.flatten().tolist() == [4.0, 3.0, 2.0, 3.0, 0.0]


def test_paths_must_go_forward():
    check_path([head(0, 0), p.HeadInputNode(layer=1, head=0, input="k")])
    with pytest.raises(PathError, match="paths go forward"):
        check_path([head(1, 0), p.HeadInputNode(layer=1, head=0, input="k")])
    with pytest.raises(PathError, match="cannot receive"):
        check_path([head(1, 0), p.EmbedNode()])


@pytest.mark.parametrize(
    ("holds", "expected"),
    [
        ([False, False, True, True], 30),
        ([True, False, True, True], 30),
        ([True, True, True, True], 10),
        ([True, True, True, False], None),
        ([False, False, False, False], None),
    ],
)
def test_birth_is_the_first_step_from_which_the_condition_keeps_holding(holds, expected):
    assert birth([10, 20, 30, 40], holds) == expected
    assert birth([40, 30, 20, 10], holds[::-1]) == expected


def test_a_residual_site_ablates_only_its_role_positions(model64, probe):
    site = iv.residual_site(0, "answer")
    where = iv.role_position_mask(probe, "answer")
    assert where.sum().item() == len(probe)  # one answer position per read
    with torch.no_grad():
        ablated = iv.run_edited(model64, probe, [iv.replace_edit(site, torch.zeros(1), probe)])

        def zero_at_answers(x, name):
            return x.masked_fill(where[..., None], 0.0)

        by_hand = iv.run_edited(
            model64, probe, [("hook_embed", zero_at_answers), ("hook_pos_embed", zero_at_answers)]
        )
    torch.testing.assert_close(ablated.logits, by_hand.logits, rtol=0, atol=1e-12)
