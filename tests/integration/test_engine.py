"""The engine on the tiny run: windows, births, share, probes, seed matrices, cache and jobs.

Each aggregate is checked against an independent computation from the per-checkpoint series
the engine reports, and the series against `at` predictions measured on their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.cache import MeasurementCache
from runner.engine.study import Engine, load_probes, run_study
from runner.measure.attribution import linearised_margin
from runner.measure.paths import PathPatcher, path_names
from runner.measure.probe import ProbeBatch, clean_run
from runner.model.checkpoints import list_steps, load_model, weights_path
from runner.model.rundir import read_config
from runner.stats.births import birth

HEADER = """study "engine"
probe iid = split test_iid n 48 seed 0
probe held = split heldout n 48 seed 0
correction none
window every = 0 ..
window late = 20 ..
path direct = L1.H0 -> unembed
"""


def plan_of(text: str):
    return compile_spec(parse(text, "engine.hyp"), text, None)


def judge(run: Path, claims: str, **options):
    return run_study(plan_of(HEADER + claims), [run], **options)


def claim(result, name: str):
    return next(c for c in result.claims if c.name == name)


def test_window_aggregates_match_their_series(tiny_run: Path):
    result = judge(
        tiny_run,
        """claim all_ "loss everywhere" { over every (all) on iid: loss < 6 }
claim mean_ "mean loss" { over late (mean) on iid: loss < 6 }
claim trend_ "loss trend" { over every (trend) on iid: loss < 0 }
claim at20 "loss at 20" { at 20 on iid: loss < 6 }
""",
    )
    steps = list_steps(tiny_run)
    every = claim(result, "all_").predictions[0]
    assert every.steps == tuple(steps) and [s.step for s in every.series] == steps
    # the series point at 20 is the `at 20` prediction, measured on its own
    at20 = claim(result, "at20").predictions[0]
    point = next(s for s in every.series if s.step == 20)
    assert point.estimate == at20.estimate and point.interval == at20.interval
    # `all`: the worst checkpoint; Supported only if every checkpoint's interval is below
    worst = max(every.series, key=lambda s: s.difference)
    assert every.statistic_value == pytest.approx(worst.difference)
    each_below = all(s.difference_interval.high < 0 for s in every.series)
    assert (every.verdict == "supported") == each_below
    # `mean`: the mean over the window's checkpoints of the per-checkpoint means
    mean = claim(result, "mean_").predictions[0]
    late = [s for s in every.series if s.step >= 20]
    assert mean.steps == tuple(s.step for s in late)
    assert mean.estimate == pytest.approx(np.mean([s.estimate for s in late]), rel=1e-12)
    # `trend`: Spearman's rho of the difference against the step
    trend = claim(result, "trend_").predictions[0]
    rho = sps.spearmanr(steps, [s.difference for s in every.series]).statistic
    assert trend.statistic_value == pytest.approx(rho)
    assert trend.p_value is not None and 0 < trend.p_value <= 1


def loss_series(tiny_run: Path) -> tuple[list[int], list[float]]:
    """The IID loss at every checkpoint of the tiny run, as the engine measures it."""
    series = (
        claim(judge(tiny_run, 'claim s "loss" { over every (all) on iid: loss < 100 }\n'), "s")
        .predictions[0]
        .series
    )
    return [s.step for s in series], [s.estimate for s in series]


def test_births_and_birth_windows_match_the_definition(tiny_run: Path):
    steps, losses = loss_series(tiny_run)
    # thresholds between observed losses, so both conditions are born somewhere in the run
    low = float(np.sort(losses)[len(losses) // 2]) + 1e-9
    high = float(np.max(losses)) + 1.0
    text = f"""window pre = .. before birth(loss on iid < {low})
claim order "A loose bound is met before a tight one" {{
  birth(loss < {high}) before birth(loss < {low}) on iid
}}
claim pre_ "Before the tight bound's birth" {{
  over pre (mean) on iid: loss > 0
}}
"""
    result = judge(tiny_run, text)
    order = claim(result, "order").predictions[0]
    born_tight = birth(steps, [x < low for x in losses])
    born_loose = birth(steps, [x < high for x in losses])
    assert [b.step for b in order.births] == [born_loose, born_tight]
    assert order.estimate == born_loose and order.threshold == born_tight
    assert born_loose is not None and born_tight is not None and born_loose < born_tight
    pre = claim(result, "pre_").predictions[0]
    assert pre.steps == tuple(s for s in steps if s < born_tight)
    assert pre.births[0].step == born_tight


def test_share_is_a_ratio_of_sums_over_reads(tiny_run: Path):
    pred = claim(
        judge(tiny_run, 'claim sh "share" { at final on iid: share(direct) > -100 }\n'), "sh"
    ).predictions[0]
    config = read_config(tiny_run)
    model = load_model(tiny_run, config.steps, config.model)
    probe = ProbeBatch.from_split(load_probes(tiny_run, [plan_of(HEADER).probe("iid")])["iid"])
    with torch.no_grad():
        run = clean_run(model, probe, path_names(model))
        contribution = PathPatcher(model, probe, run, 0).contribution(
            plan_of(HEADER).paths[0].nodes
        )
        m_lin = linearised_margin(run.logits, probe.target)
    assert pred.estimate == pytest.approx(float(contribution.sum() / m_lin.sum()), rel=1e-6)
    assert pred.interval is not None and pred.interval.low < pred.estimate < pred.interval.high


def test_a_quantity_on_another_probe_is_compared_unpaired(tiny_run: Path):
    result = judge(
        tiny_run,
        """claim cross "iid against heldout" { at final on iid: loss > loss on held }
claim iid_ "iid" { at final on iid: loss > 0 }
claim held_ "held" { at final on held: loss > 0 }
""",
    )
    cross = claim(result, "cross").predictions[0]
    assert cross.estimate == claim(result, "iid_").predictions[0].estimate
    assert cross.threshold == claim(result, "held_").predictions[0].estimate


def test_equivalence_claims_use_two_one_sided_tests(tiny_run: Path):
    result = judge(
        tiny_run,
        """claim same "Ablating a head changes the loss by less than 100" {
  at final on iid: |loss with ablate(L1.H1, mean) - loss| < 100
}
claim differ "Zeroing the embeddings changes it by less than 0.01" {
  at final on iid: |loss with ablate(embed, zero) - loss| < 0.01
}
""",
    )
    same, differ = claim(result, "same"), claim(result, "differ")
    assert same.predictions[0].test == "equivalence" and same.verdict == "supported"
    assert differ.verdict == "negative"


def test_a_seed_matrix_judges_each_run_and_aggregates(tiny_run: Path, tmp_path: Path):
    for name in ("seed-1", "seed-2", "seed-3"):
        shutil.copytree(tiny_run, tmp_path / name)
    text = HEADER.replace('study "engine"', f'study "engine"\nruns seeds = "{tmp_path}/seed-*"')
    text += 'claim c "chance level at step 0" { at first on iid: accuracy < 0.2 }\n'
    plan = plan_of(text)
    from runner.engine.run_globs import matching_runs

    runs = matching_runs(plan, Path.cwd())
    assert [r.name for r in runs] == ["seed-1", "seed-2", "seed-3"]
    result = run_study(plan, runs)
    c = result.claims[0]
    assert [r.run for r in c.runs] == ["seed-1", "seed-2", "seed-3"]
    assert all(r.verdict == "supported" for r in c.runs)
    assert c.verdict == "supported" and "3 of 3 runs Supported" in c.reason
    assert len(result.provenance.runs) == 3


CACHED = """claim a "acc" { at final on iid: accuracy > 0 }
claim b "grad" { at 20 on iid: alignment(direct) > -1000 }
"""


def test_the_cache_serves_a_rerun_and_only_new_claims_are_measured(tiny_run: Path, tmp_path):
    cache = tmp_path / "cache"
    plan = plan_of(HEADER + CACHED)
    cold = Engine(plan, tiny_run, cache_dir=cache)
    cold_claims, _ = cold.run_claims()
    assert cold.computed == cold.requested == 2
    warm = Engine(plan, tiny_run, cache_dir=cache)
    warm_claims, _ = warm.run_claims()
    assert warm.computed == 0 and warm_claims == cold_claims
    bigger = plan_of(HEADER + CACHED + 'claim c "loss" { at final on iid: loss > 0 }\n')
    more = Engine(bigger, tiny_run, cache_dir=cache)
    more.run_claims()
    assert (more.requested, more.computed) == (3, 1)
    uncached = Engine(plan, tiny_run, cache_dir=None)
    assert uncached.run_claims()[0] == cold_claims and uncached.computed == 2
    assert len(MeasurementCache(cache).entries()) == 3
    assert MeasurementCache(cache).clear() == 3 and not MeasurementCache(cache).entries()


def test_a_torn_cache_entry_is_recomputed(tiny_run: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    plan = plan_of(HEADER + CACHED)
    first, _ = Engine(plan, tiny_run, cache_dir=cache).run_claims()
    for entry in MeasurementCache(cache).entries():
        entry.write_bytes(entry.read_bytes()[:20])
    again = Engine(plan, tiny_run, cache_dir=cache)
    assert again.run_claims()[0] == first and again.computed == 2


def test_jobs_give_the_same_verdicts(tiny_run: Path):
    text = HEADER + 'claim t "trend" { over every (trend) on iid: loss < 0 }\n' + CACHED
    one = run_study(plan_of(text), [tiny_run], jobs=1)
    two = run_study(plan_of(text), [tiny_run], jobs=2)
    assert [c.verdict for c in one.claims] == [c.verdict for c in two.claims]
    for a, b in zip(one.claims, two.claims, strict=True):
        for pa, pb in zip(a.predictions, b.predictions, strict=True):
            assert pa.estimate == pytest.approx(pb.estimate, rel=1e-5, abs=1e-7)


def test_a_truncated_and_a_missing_checkpoint_leave_the_others_judged(tiny_run: Path, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    path = weights_path(run, 20)
    path.write_bytes(path.read_bytes()[:-64])
    result = judge(
        run,
        """claim torn "at a truncated checkpoint" { at 20 on iid: loss > 0 }
claim gone "at a missing step" { at 50 on iid: loss > 0 }
claim window "over a window that holds the truncated one" { over every (mean) on iid: loss > 0 }
claim fine "elsewhere" { at final on iid: loss > 0 }
""",
        cache_dir=tmp_path / "cache",
    )
    assert claim(result, "fine").verdict == "supported"
    for name, why in (
        ("torn", "corrupt checkpoint"),
        ("gone", "no checkpoint at step 50"),
        ("window", "corrupt checkpoint"),
    ):
        c = claim(result, name)
        assert c.verdict == "unsupported" and why in c.reason, c.reason
    assert 20 not in result.provenance.runs[0].checkpoints


KILLED = """study "kill"
probe iid = split test_iid n 64 seed 0
window every = 0 ..
path direct = L1.H0 -> unembed
claim g "gradients over training" {
  over every (mean) on iid: alignment(direct) > -1000
  over every (mean) on iid: gram(by=key) > -1000
  over every (mean) on iid: gram(by=value) > -1000
}
"""


def test_killing_a_run_mid_way_leaves_the_cache_valid(tiny_run: Path, tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec, cache = tmp_path / "kill.hyp", tmp_path / "cache"
    spec.write_text(KILLED)
    command = [sys.executable, "-m", "hypodsl.cli", "run", str(spec), "--run", str(tiny_run)]
    env = {**os.environ, "HYPODSL_CACHE": str(cache)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not MeasurementCache(cache).entries() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    entries = MeasurementCache(cache).entries()
    assert 0 < len(entries) < 18  # some written, some not: it died mid-way
    for entry in entries:  # every entry is whole: its checksum and length verify
        assert MeasurementCache(cache).get(entry.stem) is not None
    report = [str(tmp_path / "a"), str(tmp_path / "b")]
    resumed = subprocess.run([*command, "--report", report[0]], env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    uncached = subprocess.run([*command, "--report", report[1], "--no-cache"], env=env)
    assert uncached.returncode == 0
    assert (tmp_path / "a" / "kill.json").read_bytes() == (
        tmp_path / "b" / "kill.json"
    ).read_bytes()
    assert b"18 measurements (" in resumed.stdout and b"(0 from the cache)" not in resumed.stdout


def test_cli_cache_commands_and_bad_run_options(tiny_run: Path, tmp_path: Path, capsys):
    from hypodsl.cli import main

    spec = tmp_path / "c.hyp"
    spec.write_text(HEADER + CACHED)
    cache = str(tmp_path / "cache")
    args = ["run", str(spec), "--run", str(tiny_run), "--cache-dir", cache]
    assert main(args) == 0
    assert "2 measurements (0 from the cache)" in capsys.readouterr().out
    assert main(args) == 0
    assert "2 measurements (2 from the cache)" in capsys.readouterr().out
    assert main(["cache", "info", "--cache-dir", cache]) == 0
    assert "2 cached measurements" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", cache]) == 0
    assert "removed 2 cached measurements" in capsys.readouterr().out
    assert main([*args, "--jobs", "0"]) == 2
    assert "argument --jobs: 0 is outside 1..256" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_a_birth_rule_is_the_specs_choice_and_never_born_is_said(tiny_run: Path):
    """`birth(C, first)`: the first checkpoint where C holds; `birth(C)`: from where it keeps
    holding. A condition that holds at one checkpoint and fails later (the loss above a bound
    only its highest value exceeds) is born there by the first rule and never by the sustained
    one; the reason says which side is never born."""
    steps, losses = loss_series(tiny_run)
    fades = float(np.sort(losses)[-2]) + 1e-9  # only the highest loss is above it
    peak = losses.index(max(losses))
    assert peak < len(steps) - 1  # it holds there, then fails: never born for good
    text = f"""claim first_rule "held at the start" {{
  birth(loss > {fades}, first) before birth(loss < 100) on iid
}}
claim sustained_rule "never held to the end" {{
  birth(loss < 100) before birth(loss > {fades}) on iid
}}
"""
    result = judge(tiny_run, text)
    first = claim(result, "first_rule").predictions[0]
    assert [b.step for b in first.births] == [steps[peak], steps[0]]
    sustained = claim(result, "sustained_rule").predictions[0]
    assert [b.step for b in sustained.births] == [steps[0], None]
    assert "the right never (not by the last checkpoint" in sustained.reason
    assert sustained.verdict == "supported" and "inf" not in sustained.reason
