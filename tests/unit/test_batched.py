"""Shared passes give what one pass per quantity gives: stacked edited runs against one hooked
forward each, windows cut after their last answer, passes restarted half-way or run at the
answers only, stacked gradients against one target at a time.

These are different computations of one value, so they are equal up to float rounding
(`tests.numerics.assert_equivalent`: the tolerance and why), in float32 and in float64, at the
unit tests' toy width and at the widths of the `small` and `reference` configs; a test below
shows that a real indexing or masking bug fails them. Running the same computation twice gives
the same bytes (`test_a_sweep_run_twice_gives_the_same_bytes`)."""

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
from runner.model.configs import NAMED_CONFIGS
from runner.model.hooks import hooks
from runner.model.transformer import ModelConfig, Transformer
from tests.numerics import assert_equivalent, relative_difference, tolerance
from tests.unit.measure_helpers import probe_of, random_basis

pytestmark = pytest.mark.numerics  # run again under other CPU kernels (Makefile)

CONFIG = ModelConfig(d_model=32, n_layers=3, n_heads=2, d_ff=64)
# The toy width, and the widths of the models users train: other shapes take other kernels.
CONFIGS = {
    "toy": CONFIG,
    "small": NAMED_CONFIGS["small"].model,
    "reference": NAMED_CONFIGS["reference"].model,
}
DTYPES = [torch.float32, torch.float64]
UNEMBED = p.UnembedNode()


def random_model(seed: int, scale: float = 0.3, config: ModelConfig = CONFIG) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(config)
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


MODELS: dict[tuple[str, torch.dtype], Transformer] = {}


def model_of(config: str, dtype: torch.dtype) -> Transformer:
    """A random model of a config's shape (the wider ones with smaller weights, so that the
    stream stays of the toy model's magnitude), in `dtype`; built once per session."""
    if (config, dtype) not in MODELS:
        scale = 0.3 if config == "toy" else 0.1
        MODELS[config, dtype] = random_model(0, scale, CONFIGS[config]).to(dtype)
    return MODELS[config, dtype]


def edited_runs(model, probe, run) -> list[batched.EditedRun]:
    """Every kind of edit: heads, MLPs, neurons, embeddings, a QK restriction, a residual role
    site, two edits composed, a run that keeps an activation, sources with one row per sequence
    (resample, a feature patch) and features of a basis."""
    cfg = model.cfg
    last = cfg.n_layers - 1
    nodes = [
        p.HeadNode(layer=layer, head=h) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)
    ]
    nodes += [p.MlpNode(layer=layer) for layer in range(1, cfg.n_layers)]
    nodes += [p.NeuronsNode(layer=0, indices=(3, 7)), p.EmbedNode(), p.PosNode()]
    nodes += [p.HeadInputNode(layer=1, head=0, input="k")]
    runs = {}
    for node in nodes:
        site = iv.site_of(node)
        source = iv.mean_source(run[site.hook], probe.token_mask(), probe.n_pos)
        runs[site.label] = batched.EditedRun(site.label, (iv.replace_edit(site, source, probe),))
    neurons, head01 = iv.site_of(nodes[-4]).label, iv.site_of(nodes[1]).label
    qk = p.HeadQKNode(layer=1, head=1, from_role="answer", to_role="match_value")
    extra = [batched.EditedRun("qk", (iv.qk_zero_edit(probe, qk),))]
    resid = iv.residual_site(last, "match_value")
    extra.append(batched.EditedRun("resid", (iv.replace_edit(resid, torch.zeros(1), probe),)))
    extra.append(batched.EditedRun("two", (runs[head01].edits[0], runs[neurons].edits[0])))
    keep = ("blocks.1.hook_resid_post", "ln_final.hook_normalized")
    first_mlp = iv.site_of(p.MlpNode(layer=1)).label
    extra.append(batched.EditedRun("kept", runs[first_mlp].edits, keep))
    head = iv.site_of(p.HeadNode(layer=1, head=0))
    resample = iv.resample_source(run[head.hook], seed=3)
    extra.append(batched.EditedRun("resample", (iv.replace_edit(head, resample, probe),)))
    dtype = model.embed.weight.dtype
    basis = random_basis("blocks.0.hook_resid_post", cfg.d_model, 4, dtype)
    ids = (1, 4, 6)
    other = iv.resample_source(run["blocks.0.hook_resid_post"], seed=5)
    patch = ft.fixed_source(ft.reference_features(basis, other, ids))
    extra.append(batched.EditedRun("features", (ft.basis_edit(basis, ids, patch),)))
    extra.append(batched.EditedRun("no features", (ft.basis_edit(basis, ids, ft.zero_source()),)))
    return [*runs.values(), *extra]


def full_clean_run(model, probe):
    """The full clean pass, caching what the runs restart from and their sources read."""
    names = batched.restart_names(model) + [
        f"blocks.{layer}.{hook}"
        for layer in range(model.cfg.n_layers)
        for hook in ("attn.hook_z", "attn.hook_k", "mlp.hook_post")
    ]
    extra = ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_post"]
    return clean_run(model, probe, [*names, *extra])


def assert_equal_to_one_forward_each(model, probe, runs, stacked) -> None:
    """Each run's logits and kept activations, those of its own hooked forward up to rounding."""
    for edited in runs:
        one = iv.run_edited(model, probe, list(edited.edits), edited.names)
        assert_equivalent(stacked[edited.key].logits, one.logits, edited.key)
        for name in edited.names:
            assert_equivalent(stacked[edited.key][name], one[name], (edited.key, name))


# (config, sequences a pass): windows of 1 and 7 sequences, stacks of 2 runs, all at once;
# windows of one sequence are slow (a pass each) and so run on the toy width only.
TOY_AND_WIDE = [("toy", 1), ("toy", 7), ("toy", 50), ("toy", 10_000), ("small", 7),
                ("small", 50), ("reference", 7), ("reference", 10_000)]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("config", "max_rows"), TOY_AND_WIDE)
def test_stacked_edited_runs_equal_one_hooked_forward_each(probe, max_rows, config, dtype):
    model = model_of(config, dtype)
    with torch.no_grad():
        run = full_clean_run(model, probe)
        runs = edited_runs(model, probe, run)
        stacked = batched.run_many(model, probe, run, runs, max_rows=max_rows)
        assert_equal_to_one_forward_each(model, probe, runs, stacked)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("config", "max_rows"), [("toy", 1), ("toy", 7), ("toy", 10_000),
                                                  ("small", 7), ("reference", 10_000)])  # fmt: skip
def test_edited_runs_from_the_restart_pass_equal_one_hooked_forward_each(
    probe, max_rows, config, dtype
):
    """The restart pass has the last block at the answers only: runs that need it elsewhere
    (a kept activation of the last block, an edit of the final LayerNorm) restart before it."""
    model = model_of(config, dtype)
    last = model.cfg.n_layers - 1
    with torch.no_grad():
        run = full_clean_run(model, probe)
        runs = edited_runs(model, probe, run)  # sources from the full clean pass
        last_mlp = iv.site_of(p.MlpNode(layer=last))
        mlp_edit = iv.replace_edit(last_mlp, torch.zeros(1), probe)
        scale = ("ln_final.hook_scale", lambda x, name, seqs=iv.ALL_SEQUENCES: x * 2)
        runs += [
            batched.EditedRun("last mlp", (mlp_edit,)),
            batched.EditedRun("last mlp, kept", (mlp_edit,), (f"blocks.{last}.hook_mlp_out",)),
            batched.EditedRun("final scale", (scale,)),
            batched.EditedRun("nothing", ()),
        ]
        restart = batched.restart_pass(model, probe)
        assert restart.last_block_at_answers
        stacked = batched.run_many(model, probe, restart, runs, max_rows=max_rows)
        assert_equal_to_one_forward_each(model, probe, runs, stacked)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_restart_pass_equals_the_full_pass_where_it_computes_and_is_nan_elsewhere(
    probe, config, dtype
):
    """Before the last block the restart pass is the full pass's computation (the same bytes);
    the last block at the answers only is another computation of its values there."""
    model = model_of(config, dtype)
    names = batched.restart_names(model)
    with torch.no_grad():
        full = clean_run(model, probe, names)
    restart = batched.restart_pass(model, probe)
    assert_equivalent(restart.logits, full.logits, "logits")
    assert set(restart.cache) == set(names)
    last = f"blocks.{model.cfg.n_layers - 1}."
    at_answers = {last + x for x in ("attn.hook_z", "hook_resid_mid", "mlp.hook_post",
                                     "hook_resid_post")}  # fmt: skip
    elsewhere = torch.ones(probe.n_seq, probe.n_pos, dtype=torch.bool)
    elsewhere[probe.read_seq, probe.answer] = False
    for name in names:
        if name in at_answers:
            assert_equivalent(probe.at_answers(restart[name]), probe.at_answers(full[name]), name)
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
    assert_equivalent(cut.logits, one.logits, "cut window")


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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_stacked_alignments_equal_one_target_at_a_time(probe, dtype):
    model = random_model(1, scale=0.05).to(dtype)
    stacked = gr.alignments(model, probe, PATHS)
    for paths, together in zip(PATHS, stacked, strict=True):
        assert_equivalent(together, gr.alignments(model, probe, [paths])[0], paths)


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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_stacked_update_alignments_equal_one_target_at_a_time(probe, dtype):
    model = random_model(1, scale=0.05).to(dtype)
    later = random_model(2, scale=0.05).to(dtype)
    scope = p.MlpNode(layer=1)
    stacked = gr.update_alignments(model, later, probe, PATHS, scope=scope)
    for paths, together in zip(PATHS, stacked, strict=True):
        alone = gr.update_alignment(model, later, probe, paths, scope=scope)
        assert_equivalent(together.predicted, alone.predicted, paths)
        assert_equivalent(together.observed, alone.observed, paths)


def test_predicted_changes_equal_the_predicted_part_of_update_alignments(probe):
    model, later = random_model(1, scale=0.05), random_model(2, scale=0.05)
    updates = gr.update_alignments(model, later, probe, PATHS)
    predicted = gr.predicted_changes(model, later, probe, PATHS)
    for update, alone in zip(updates, predicted, strict=True):
        assert_equivalent(update.predicted, alone)
        assert alone.abs().max() > 1e-4


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_queries", [2, 3, 9])
@pytest.mark.parametrize("d_model", [32, 128])  # 128: the reference width
@pytest.mark.parametrize("n_seq", [1, 2, 16])  # a single sequence: the tiniest products
@pytest.mark.parametrize("split", [False, True])  # q at the queries only
@pytest.mark.parametrize("hooked_q", [False, True])  # a hook on q: q at every position
def test_attention_at_some_queries_equals_the_full_attention_there(
    n_queries, d_model, n_seq, split, hooked_q, dtype
):
    config = CONFIG.model_copy(update={"d_model": d_model})
    torch.manual_seed(3)
    model = Transformer(config).to(dtype)
    attn = model.block(1).attn
    torch.manual_seed(4)
    x = torch.randn(n_seq, 20, d_model, dtype=dtype)
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
    assert_equivalent(some, full[rows, queries])
    assert seen == ([(n_seq, 20, config.n_heads, config.d_head)] if hooked_q else [])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_edited_runs_with_one_read_per_sequence_equal_one_hooked_forward_each(probe, config, dtype):
    model = model_of(config, dtype)
    keep = torch.ones_like(probe.read_seq, dtype=torch.bool)
    keep[1:] = probe.read_seq[1:] != probe.read_seq[:-1]  # the first read of each sequence
    single = dataclasses.replace(
        probe, read_seq=probe.read_seq[keep], answer=probe.answer[keep], target=probe.target[keep]
    )
    assert int(torch.bincount(single.read_seq).max()) == 1  # one query row, padded to two
    run = clean_run(model, single, batched.restart_names(model))
    sites = [iv.site_of(p.HeadNode(layer=layer, head=0)) for layer in range(model.cfg.n_layers)]
    runs = [
        batched.EditedRun(s.label, (iv.replace_edit(s, torch.zeros(1), single),)) for s in sites
    ]
    together = batched.run_many(model, single, run, runs)
    for edited in runs:
        alone = iv.run_edited(model, single, list(edited.edits))
        assert_equivalent(together[edited.key].logits, alone.logits, edited.key)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("config", "max_rows"), [("toy", 1), ("toy", 7), ("toy", 10_000),
                                                  ("small", 7), ("reference", 10_000)])  # fmt: skip
def test_the_answer_pass_equals_the_full_forward_pass_at_the_answers(
    probe, max_rows, config, dtype
):
    model = model_of(config, dtype)
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        full = clean_run(model, probe, [last, "ln_final.hook_scale"])
    answers = batched.answer_pass(model, probe, max_rows)
    assert_equivalent(answers.logits, full.logits, "logits")
    assert_equivalent(answers[last], probe.at_answers(full[last]), last)
    scale = "ln_final.hook_scale"
    assert_equivalent(answers[scale], probe.at_answers(full[scale]), scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("queries", [True, False])
def test_the_answers_only_run_equals_the_full_pass_at_the_answers(model, probe, queries, dtype):
    """`answer_run` (the clean pass of differentiated path values): every cached activation
    equals the full pass's where it is computed (before the last block the same computation,
    the same bytes), the last block past its attention at the answers only and NaN elsewhere;
    with `queries` its attention's pattern and z are absent."""
    model = model_of("toy", dtype)
    names = [*names_for(model, {}), "blocks.2.ln2.hook_scale", "blocks.2.hook_mlp_out"]
    with torch.no_grad():
        full = clean_run(model, probe, names)
        answers = batched.answer_run(model, probe, names, queries=queries)
    assert_equivalent(answers.logits, full.logits, "logits")
    past_attention = ("hook_resid_mid", "mlp.hook_post", "hook_resid_post", "ln2.hook_scale",
                      "hook_mlp_out")  # fmt: skip
    at_answers_only = {f"blocks.2.{x}" for x in past_attention} | {"ln_final.hook_scale"}
    skipped = {"blocks.2.attn.hook_pattern", "blocks.2.attn.hook_z"} if queries else set()
    assert set(answers.cache) == set(names) - skipped
    elsewhere = torch.ones(probe.n_seq, probe.n_pos, dtype=torch.bool)
    elsewhere[probe.read_seq, probe.answer] = False
    for name in answers.cache:
        if name in at_answers_only:
            assert_equivalent(probe.at_answers(answers[name]), probe.at_answers(full[name]), name)
            assert answers[name][elsewhere].isnan().all(), name
        elif name.startswith("blocks.2."):  # the last block's attention: at every query
            assert_equivalent(answers[name], full[name], name)
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


def test_a_sweep_run_twice_gives_the_same_bytes(model, probe):
    """Determinism: the same computation on the same inputs, twice."""
    with torch.no_grad():
        run = full_clean_run(model, probe)
        runs = edited_runs(model, probe, run)
        first = batched.run_many(model, probe, run, runs, max_rows=7)
        second = batched.run_many(model, probe, run, runs, max_rows=7)
    for edited in runs:
        assert torch.equal(first[edited.key].logits, second[edited.key].logits), edited.key


def _neighbours_activations(monkeypatch):
    """A window that restarts from its neighbours' clean activations (the order it reads them
    in shifted by one sequence)."""
    init = batched._Reordered.__init__
    monkeypatch.setattr(
        batched._Reordered, "__init__", lambda self, clean, order: init(self, clean, order.roll(1))
    )


def _queries_one_position_early(monkeypatch):
    """The last block's attention read one position before each answer."""
    slots = batched._Restarted.query_slots

    def early(self):
        at, slot_of_read = slots(self)
        return (at - 1).clamp(min=0), slot_of_read

    monkeypatch.setattr(batched._Restarted, "query_slots", early)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bug", [_neighbours_activations, _queries_one_position_early])
def test_an_indexing_bug_is_far_outside_the_tolerance(probe, monkeypatch, bug, dtype):
    """The tolerance is not a blanket: a read of the wrong sequence or the wrong position moves
    the logits by orders of magnitude more than rounding does."""
    model = model_of("toy", dtype)
    with torch.no_grad():
        run = full_clean_run(model, probe)
        head = iv.site_of(p.HeadNode(layer=0, head=1))
        runs = [batched.EditedRun("h", (iv.replace_edit(head, torch.zeros(1), probe),))]
        one = iv.run_edited(model, probe, list(runs[0].edits))
        right = batched.run_many(model, probe, run, runs, max_rows=7)["h"]
        bug(monkeypatch)
        wrong = batched.run_many(model, probe, run, runs, max_rows=7)["h"]
    assert_equivalent(right.logits, one.logits)
    assert relative_difference(wrong.logits, one.logits) > 1000 * tolerance(dtype)
    with pytest.raises(AssertionError):
        assert_equivalent(wrong.logits, one.logits)
