"""Shared passes give exactly what one pass per quantity gives: stacked edited runs against one
hooked forward each, stacked gradients against one target at a time (float32, bit for bit)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hypodsl import plan as p
from runner.measure import batched
from runner.measure import features as ft
from runner.measure import gradients as gr
from runner.measure import interventions as iv
from runner.measure.circuits import names_for
from runner.measure.probe import clean_run
from runner.model.hooks import hooks
from runner.model.transformer import ModelConfig, Transformer
from tests.unit.measure_helpers import probe_of, random_basis

CONFIG = ModelConfig(d_model=32, n_layers=3, n_heads=2, d_ff=64)
UNEMBED = p.UnembedNode()


def random_model(seed: int, scale: float = 0.3) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(CONFIG)
    with torch.no_grad():
        for w in model.parameters():
            w.add_(torch.randn_like(w) * scale)
    return model


@pytest.fixture(scope="module")
def probe(small_arrays):
    return probe_of(small_arrays, "test_iid", 24)


@pytest.fixture(scope="module")
def model():
    return random_model(0)


def edited_runs(model, probe, run) -> list[batched.EditedRun]:
    """Every kind of edit: heads, MLPs, neurons, embeddings, a QK restriction, a residual role
    site, two edits composed, a run that keeps an activation, sources with one row per sequence
    (resample, a feature patch) and features of a basis."""
    nodes = [p.HeadNode(layer=layer, head=h) for layer in range(3) for h in range(2)]
    nodes += [p.MlpNode(layer=1), p.MlpNode(layer=2), p.NeuronsNode(layer=0, indices=(3, 7))]
    nodes += [p.EmbedNode(), p.PosNode(), p.HeadInputNode(layer=1, head=0, input="k")]
    runs = []
    for node in nodes:
        site = iv.site_of(node)
        source = iv.mean_source(run[site.hook], probe.token_mask(), probe.n_pos)
        runs.append(batched.EditedRun(site.label, (iv.replace_edit(site, source, probe),)))
    qk = p.HeadQKNode(layer=1, head=1, from_role="answer", to_role="match_value")
    runs.append(batched.EditedRun("qk", (iv.qk_zero_edit(probe, qk),)))
    resid = iv.residual_site(2, "match_value")
    runs.append(batched.EditedRun("resid", (iv.replace_edit(resid, torch.zeros(1), probe),)))
    runs.append(batched.EditedRun("two", (runs[1].edits[0], runs[8].edits[0])))
    keep = ("blocks.1.hook_resid_post", "ln_final.hook_normalized")
    runs.append(batched.EditedRun("kept", runs[6].edits, keep))
    head = iv.site_of(p.HeadNode(layer=1, head=0))
    resample = iv.resample_source(run[head.hook], seed=3)
    runs.append(batched.EditedRun("resample", (iv.replace_edit(head, resample, probe),)))
    basis = random_basis("blocks.0.hook_resid_post", CONFIG.d_model, 4, torch.float32)
    ids = (1, 4, 6)
    other = iv.resample_source(run["blocks.0.hook_resid_post"], seed=5)
    patch = ft.fixed_source(ft.reference_features(basis, other, ids))
    runs.append(batched.EditedRun("features", (ft.basis_edit(basis, ids, patch),)))
    runs.append(batched.EditedRun("no features", (ft.basis_edit(basis, ids, ft.zero_source()),)))
    return runs


def full_clean_run(model, probe):
    """The full clean pass, caching what the runs restart from and their sources read."""
    names = batched.restart_names(model) + [
        f"blocks.{layer}.{hook}"
        for layer in range(3)
        for hook in ("attn.hook_z", "attn.hook_k", "mlp.hook_post")
    ]
    extra = ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_post"]
    return clean_run(model, probe, [*names, *extra])


def assert_equal_to_one_forward_each(model, probe, runs, stacked) -> None:
    """Each run's logits and kept activations, bit for bit those of its own hooked forward."""
    for edited in runs:
        one = iv.run_edited(model, probe, list(edited.edits), edited.names)
        assert torch.equal(stacked[edited.key].logits, one.logits), edited.key
        for name in edited.names:
            assert torch.equal(stacked[edited.key][name], one[name]), (edited.key, name)


@pytest.mark.parametrize("max_rows", [1, 7, 50, 10_000])  # windows of 1 and 7, stacks of 2, all
def test_stacked_edited_runs_equal_one_hooked_forward_each_bit_for_bit(model, probe, max_rows):
    with torch.no_grad():
        run = full_clean_run(model, probe)
        runs = edited_runs(model, probe, run)
        stacked = batched.run_many(model, probe, run, runs, max_rows=max_rows)
        assert_equal_to_one_forward_each(model, probe, runs, stacked)


@pytest.mark.parametrize("max_rows", [1, 7, 10_000])
def test_edited_runs_from_the_restart_pass_equal_one_hooked_forward_each_bit_for_bit(
    model, probe, max_rows
):
    """The restart pass has the last block at the answers only: runs that need it elsewhere
    (a kept activation of the last block, an edit of the final LayerNorm) restart before it."""
    with torch.no_grad():
        run = full_clean_run(model, probe)
        runs = edited_runs(model, probe, run)  # sources from the full clean pass
        last_mlp = iv.site_of(p.MlpNode(layer=2))
        mlp_edit = iv.replace_edit(last_mlp, torch.zeros(1), probe)
        scale = ("ln_final.hook_scale", lambda x, name, seqs=iv.ALL_SEQUENCES: x * 2)
        runs += [
            batched.EditedRun("last mlp", (mlp_edit,)),
            batched.EditedRun("last mlp, kept", (mlp_edit,), ("blocks.2.hook_mlp_out",)),
            batched.EditedRun("final scale", (scale,)),
            batched.EditedRun("nothing", ()),
        ]
        restart = batched.restart_pass(model, probe)
        assert restart.last_block_at_answers
        stacked = batched.run_many(model, probe, restart, runs, max_rows=max_rows)
        assert_equal_to_one_forward_each(model, probe, runs, stacked)


def test_the_restart_pass_equals_the_full_pass_where_it_computes_and_is_nan_elsewhere(model, probe):
    names = batched.restart_names(model)
    with torch.no_grad():
        full = clean_run(model, probe, names)
    restart = batched.restart_pass(model, probe)
    assert torch.equal(restart.logits, full.logits)
    assert set(restart.cache) == set(names)
    at_answers = {f"blocks.2.{x}" for x in ("attn.hook_z", "hook_resid_mid", "mlp.hook_post",
                                            "hook_resid_post")}  # fmt: skip
    elsewhere = torch.ones(probe.n_seq, probe.n_pos, dtype=torch.bool)
    elsewhere[probe.read_seq, probe.answer] = False
    for name in names:
        if name in at_answers:
            assert torch.equal(probe.at_answers(restart[name]), probe.at_answers(full[name]))
            assert restart[name][elsewhere].isnan().all(), name
        else:
            assert torch.equal(restart[name], full[name]), name


def test_windows_are_cut_after_their_last_answer_and_keep_at_least_the_softmax_width(probe):
    """Sequences ordered by their last answer, each window cut after it; a probe whose reads
    all end early keeps `MIN_POSITIONS` positions, and the runs still equal one forward each."""
    order, windows = batched._cut_windows(probe, 7)
    ends = torch.zeros(probe.n_seq, dtype=torch.int64).scatter_reduce(
        0, probe.read_seq, probe.answer, "amax"
    )
    assert any(window.cut for window in windows)
    assert sorted(torch.cat([w.seqs for w in windows]).tolist()) == list(range(probe.n_seq))
    for window in windows:
        assert window.n_pos == max(int(ends[window.seqs].max()) + 1, batched.MIN_POSITIONS)
        assert torch.equal(window.tokens, probe.tokens[window.seqs, : window.n_pos])
        assert torch.equal(window.answer, probe.answer[window.reads])
        assert torch.equal(window.seqs[window.read_seq], probe.read_seq[window.reads])
        assert torch.equal(order[window.rows], window.seqs)
    early = probe.answer < 15
    short = dataclasses.replace(
        probe, read_seq=probe.read_seq[early], answer=probe.answer[early],
        target=probe.target[early],
    )  # fmt: skip
    assert len(short) >= 8  # fewer rows would take other kernels in the last block
    assert [w.n_pos for w in batched._cut_windows(short, 10_000)[1]] == [batched.MIN_POSITIONS]
    model = random_model(2)
    site = iv.site_of(p.HeadNode(layer=0, head=1))
    edit = iv.replace_edit(site, torch.zeros(1), short)
    with torch.no_grad():
        run = clean_run(model, short, batched.restart_names(model))
        runs = [batched.EditedRun("h", (edit,))]
        cut = batched.run_many(model, short, run, runs, 10_000)["h"]
        one = iv.run_edited(model, short, [edit])
    assert torch.equal(cut.logits, one.logits)


def test_an_edit_downstream_of_a_kept_activation_leaves_it_clean(model, probe):
    with torch.no_grad():
        run = clean_run(model, probe, [*batched.restart_names(model), "blocks.0.hook_resid_post"])
        site = iv.site_of(p.HeadNode(layer=2, head=0))
        edit = iv.replace_edit(site, torch.zeros(1), probe)
        keep = batched.EditedRun("k", (edit,), ("blocks.0.hook_resid_post",))
        out = batched.run_many(model, probe, run, [keep])["k"]
    assert batched.restart_of(keep, model) == (0, batched.POST)
    assert torch.equal(out["blocks.0.hook_resid_post"], run["blocks.0.hook_resid_post"])


PATHS = [
    [[p.HeadNode(layer=0, head=0), UNEMBED]],
    [[p.HeadNode(layer=1, head=1), UNEMBED]],
    [[p.MlpNode(layer=2), UNEMBED]],
    [[p.HeadNode(layer=0, head=1), p.MlpNode(layer=1), UNEMBED]],
    [[p.HeadNode(layer=0, head=0), UNEMBED], [p.MlpNode(layer=0), UNEMBED]],
]


def test_stacked_alignments_equal_one_target_at_a_time_bit_for_bit(probe):
    model = random_model(1, scale=0.05)
    stacked = gr.alignments(model, probe, PATHS)
    for paths, together in zip(PATHS, stacked, strict=True):
        assert torch.equal(together, gr.alignments(model, probe, [paths])[0])


def test_forward_mode_alignment_equals_the_backward_pass_alignment_in_float64(probe):
    model = random_model(1, scale=0.05).double()
    stacked = gr.alignments(model, probe, PATHS)
    for paths, forward in zip(PATHS, stacked, strict=True):
        backward = gr.alignment(model, probe, paths, cosine=False).per_read
        torch.testing.assert_close(forward, backward, rtol=0, atol=1e-6)
        assert backward.abs().max() > 1e-3  # not trivially equal


def test_forward_mode_update_alignment_equals_two_backward_passes_in_float64(probe):
    model, later = random_model(1, scale=0.05).double(), random_model(2, scale=0.05).double()
    step = gr.flat_parameters(later) - gr.flat_parameters(model)
    for paths, update in zip(PATHS, gr.update_alignments(model, later, probe, PATHS), strict=True):
        values = gr.contributions(model, probe, paths)
        backward = gr.directional_derivatives(values, model, step)
        torch.testing.assert_close(update.predicted, backward, rtol=0, atol=1e-6)
        assert backward.abs().max() > 1e-3


def test_stacked_update_alignments_equal_one_target_at_a_time_bit_for_bit(probe):
    model, later = random_model(1, scale=0.05), random_model(2, scale=0.05)
    scope = p.MlpNode(layer=1)
    stacked = gr.update_alignments(model, later, probe, PATHS, scope=scope)
    for paths, together in zip(PATHS, stacked, strict=True):
        alone = gr.update_alignment(model, later, probe, paths, scope=scope)
        assert torch.equal(together.predicted, alone.predicted)
        assert torch.equal(together.observed, alone.observed)


def test_predicted_changes_equal_the_predicted_part_of_update_alignments(probe):
    model, later = random_model(1, scale=0.05), random_model(2, scale=0.05)
    updates = gr.update_alignments(model, later, probe, PATHS)
    predicted = gr.predicted_changes(model, later, probe, PATHS)
    for update, alone in zip(updates, predicted, strict=True):
        assert torch.equal(update.predicted, alone)
        assert alone.abs().max() > 1e-4


@pytest.mark.parametrize("n_queries", [2, 3, 9])
@pytest.mark.parametrize("d_model", [32, 128])  # 128: the reference width
# Two sequences: the queries' product has few rows (4 for two slots), which the split product
# pads to the general kernel's size. (One sequence with two slots at d_head 64 takes another
# kernel for the scores' tiny product, with or without the split: not asserted.)
@pytest.mark.parametrize("n_seq", [2, 16])
@pytest.mark.parametrize("split", [False, True])  # q at the queries only
@pytest.mark.parametrize("hooked_q", [False, True])  # a hook on q: q at every position
def test_attention_at_some_queries_equals_the_full_attention_there_bit_for_bit(
    n_queries, d_model, n_seq, split, hooked_q
):
    config = CONFIG.model_copy(update={"d_model": d_model})
    torch.manual_seed(3)
    model = Transformer(config)
    attn = model.block(1).attn
    torch.manual_seed(4)
    x = torch.randn(n_seq, 20, d_model)
    queries = torch.randint(0, 20, (n_seq, n_queries))
    queries[:, 1] = queries[:, 0]  # a padded slot repeats a position
    seen = []
    with torch.no_grad():
        full = attn.mix(x)
        hooked = (
            [("blocks.1.attn.hook_q", lambda q, name: seen.append(q.shape))] if hooked_q else []
        )
        with hooks(model, hooked):
            some = attn.mix_at(x, queries, split=split)
    rows = torch.arange(n_seq)[:, None]
    assert some.shape == (n_seq, n_queries, config.n_heads, config.d_head)
    assert torch.equal(some, full[rows, queries])
    assert seen == ([(n_seq, 20, config.n_heads, config.d_head)] if hooked_q else [])


def test_edited_runs_with_one_read_per_sequence_equal_one_hooked_forward_each(probe, model):
    keep = torch.ones_like(probe.read_seq, dtype=torch.bool)
    keep[1:] = probe.read_seq[1:] != probe.read_seq[:-1]  # the first read of each sequence
    single = dataclasses.replace(
        probe, read_seq=probe.read_seq[keep], answer=probe.answer[keep], target=probe.target[keep]
    )
    assert int(torch.bincount(single.read_seq).max()) == 1  # one query row, padded to two
    run = clean_run(model, single, batched.restart_names(model))
    sites = [iv.site_of(p.HeadNode(layer=layer, head=0)) for layer in range(3)]
    runs = [
        batched.EditedRun(s.label, (iv.replace_edit(s, torch.zeros(1), single),)) for s in sites
    ]
    together = batched.run_many(model, single, run, runs)
    for edited in runs:
        alone = iv.run_edited(model, single, list(edited.edits))
        assert torch.equal(together[edited.key].logits, alone.logits)


@pytest.mark.parametrize("max_rows", [1, 7, 10_000])
def test_the_answer_pass_equals_the_full_forward_pass_at_the_answers_bit_for_bit(
    model, probe, max_rows
):
    last = "blocks.2.hook_resid_post"
    with torch.no_grad():
        full = clean_run(model, probe, [last, "ln_final.hook_scale"])
    answers = batched.answer_pass(model, probe, max_rows)
    assert torch.equal(answers.logits, full.logits)
    assert torch.equal(answers[last], probe.at_answers(full[last]))
    assert torch.equal(
        answers["ln_final.hook_scale"], probe.at_answers(full["ln_final.hook_scale"])
    )


@pytest.mark.parametrize("queries", [True, False])
def test_the_answers_only_run_equals_the_full_pass_at_the_answers_bit_for_bit(
    model, probe, queries
):
    """`answer_run` (the clean pass of differentiated path values): every cached activation
    equals the full pass's where it is computed, the last block past its attention at the
    answers only and NaN elsewhere; with `queries` its attention's pattern and z are absent."""
    names = [*names_for(model, {}), "blocks.2.ln2.hook_scale", "blocks.2.hook_mlp_out"]
    with torch.no_grad():
        full = clean_run(model, probe, names)
        answers = batched.answer_run(model, probe, names, queries=queries)
    assert torch.equal(answers.logits, full.logits)
    past_attention = ("hook_resid_mid", "mlp.hook_post", "hook_resid_post", "ln2.hook_scale",
                      "hook_mlp_out")  # fmt: skip
    at_answers_only = {f"blocks.2.{x}" for x in past_attention} | {"ln_final.hook_scale"}
    skipped = {"blocks.2.attn.hook_pattern", "blocks.2.attn.hook_z"} if queries else set()
    assert set(answers.cache) == set(names) - skipped
    elsewhere = torch.ones(probe.n_seq, probe.n_pos, dtype=torch.bool)
    elsewhere[probe.read_seq, probe.answer] = False
    for name in answers.cache:
        if name in at_answers_only:
            assert torch.equal(probe.at_answers(answers[name]), probe.at_answers(full[name]))
            assert answers[name][elsewhere].isnan().all(), name
        else:
            assert torch.equal(answers[name], full[name]), name


QK_L1 = p.HeadQKNode(layer=1, head=0, from_role="answer", to_role="match_value")
# Paths whose values the forward-mode pass reads from `answer_run` (every sender kind, into the
# unembedding or through an MLP, the last layer's heads too), and paths and targets it cannot.
ANSWERS_PATHS = [
    [[p.EmbedNode(), UNEMBED], [p.PosNode(), UNEMBED]],
    [[p.HeadNode(layer=2, head=1), UNEMBED]],
    [[p.HeadQKNode(layer=2, head=0, from_role="answer", to_role="match_value"), UNEMBED]],
    [[QK_L1, p.MlpNode(layer=2), UNEMBED]],
    [[p.NeuronsNode(layer=2, indices=(2, 9)), UNEMBED]],
    [[p.HeadNode(layer=1, head=0), p.NeuronsNode(layer=2, indices=(1, 4, 30)), UNEMBED]],
]
FULL_PASS_PATHS = [
    [[p.HeadNode(layer=0, head=0), p.HeadInputNode(layer=1, head=1, input="v")]],
    [[p.HeadNode(layer=0, head=1), p.HeadNode(layer=1, head=0), p.MlpNode(layer=2), UNEMBED]],
    [[p.HeadNode(layer=0, head=0), p.MlpNode(layer=1)]],
]


def test_forward_mode_alignment_from_the_answers_only_run_equals_the_backward_pass_alignment(
    probe, monkeypatch
):
    """Every path kind the answers-only run serves, each target alone and all stacked (the last
    layer's heads among them switch its attention back to every query), and targets that need
    the full pass, against `alignment`'s backward passes through the full pass (float64)."""
    model = random_model(1, scale=0.05).double()
    calls = []
    answer_run = batched.answer_run
    monkeypatch.setattr(
        batched, "answer_run", lambda *a, **k: calls.append(k["queries"]) or answer_run(*a, **k)
    )
    targets = [*PATHS, *ANSWERS_PATHS]
    stacked = gr.alignments(model, probe, targets)
    assert calls == [False]
    for paths, together in zip(targets, stacked, strict=True):
        backward = gr.alignment(model, probe, paths, cosine=False).per_read
        torch.testing.assert_close(together, backward, rtol=0, atol=1e-6)
        torch.testing.assert_close(gr.alignments(model, probe, [paths])[0], backward,
                                   rtol=0, atol=1e-6)  # fmt: skip
        assert backward.abs().max() > 1e-4  # not trivially equal
    calls.clear()
    for paths in FULL_PASS_PATHS:
        forward = gr.alignments(model, probe, [paths, PATHS[0]])
        backward = gr.alignment(model, probe, paths, cosine=False).per_read
        torch.testing.assert_close(forward[0], backward, rtol=0, atol=1e-6)
        assert backward.abs().max() > 1e-4
    assert calls == []


def test_a_target_that_reads_the_answers_only_run_elsewhere_is_an_error_not_a_dropped_read(
    probe, monkeypatch
):
    """Nothing in the model after the last block's attention mixes positions, so the paths
    `answers_suffice` admits read nothing else; were a target to, it would read the NaN that
    `answer_run` leaves there, and NaN reads are dropped as undefined: the pass refuses."""
    model = random_model(1, scale=0.05)
    assert not bool((probe.answer == 0).any())

    def reads_position_0(target, probe, bases):
        return lambda model, run: run["blocks.2.mlp.hook_post"][probe.read_seq, 0].sum(-1)

    monkeypatch.setattr(gr, "_values_of", reads_position_0)
    with pytest.raises(ValueError, match="away from the answers"):
        gr.alignments(model, probe, [PATHS[0]])


# Feature scores on sites before, in and after the last block's attention, and after the block.
SCORE_SITES = [
    "blocks.0.hook_resid_post",
    "blocks.2.hook_resid_mid",
    "blocks.2.hook_resid_post",
    "ln_final.hook_normalized",
]


def test_feature_scores_take_the_answers_only_run_and_equal_the_backward_pass_alignment(
    probe, monkeypatch
):
    """A feature score reads its site at the answers only (`gr.SiteScore`): its forward-mode
    alignment comes from `answer_run`, with the last block's queries at the answers only, and
    equals the backward-pass alignment through the full pass (float64); a score on the last
    block's attention switches that attention back to every query."""
    model = random_model(1, scale=0.05).double()
    calls = []
    answer_run = batched.answer_run
    monkeypatch.setattr(
        batched, "answer_run", lambda *a, **k: calls.append(k["queries"]) or answer_run(*a, **k)
    )
    bases = {
        site: random_basis(site, CONFIG.d_model, seed) for seed, site in enumerate(SCORE_SITES)
    }
    scores = [
        gr.SiteScore(site, lambda m, run, b=basis: ft.activation(run, probe, b, (0, 3, 5, 6)))
        for site, basis in bases.items()
    ]
    stacked = gr.alignments(model, probe, [*scores, *ANSWERS_PATHS[:1]], bases)
    assert calls == [True]
    for score, forward in zip(scores, stacked[: len(scores)], strict=True):
        backward = gr.alignment(model, probe, score.fn, cosine=False, bases=bases).per_read
        torch.testing.assert_close(forward, backward, rtol=0, atol=1e-6)
        assert backward.abs().max() > 1e-4, score.site  # not trivially equal
    calls.clear()
    z = "blocks.2.attn.hook_z"
    on_z = gr.SiteScore(z, lambda m, run: probe.at_answers(run[z]).sum(dim=(-2, -1)))
    forward = gr.alignments(model, probe, [on_z], bases)[0]
    assert calls == [False]
    backward = gr.alignment(model, probe, on_z.fn, cosine=False).per_read
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-6)
