"""Result models: what a run of a study produces, JSON-serialisable and deterministic.

No wall-clock times or absolute paths go in here, so the same spec, checkpoints, seed and
settings give byte-identical results JSON on one machine (docs/reproducibility.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from hypodsl.plan import Verdict


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(Frozen):
    low: float
    high: float


class SeriesPoint(Frozen):
    """One checkpoint of a prediction: both sides and their difference, with intervals."""

    step: int
    estimate: float | None  # the left side
    interval: Interval | None
    threshold: float | None  # the right side
    difference: float | None
    difference_interval: Interval | None


class Trajectory(Frozen):
    """A prediction's sides at the checkpoints its figure draws (see `Judge.reads`); `label` is the
    condition (a birth order has one per birth). Context only: never part of the test."""

    label: str
    points: tuple[SeriesPoint, ...]


class BirthEstimate(Frozen):
    """A condition's birth step; None when it is not born by the last checkpoint."""

    condition: str
    step: int | None
    interval_low: float | None  # None: the interval reaches "never"
    interval_high: float | None


class PredictionResult(Frozen):
    text: str
    line: int
    probe: str
    verdict: Verdict
    reason: str
    # False when it could not be judged at all (a missing checkpoint, a non-finite value):
    # Unsupported then means "not evaluable", never "inconclusive"
    evaluable: bool = True
    test: str | None = None  # comparison, equivalence, all, mean, trend, birth order
    step: int | None = None  # the checkpoint of an `at` prediction
    steps: tuple[int, ...] = ()  # every checkpoint the prediction reads
    estimate: float | None = None  # the left side
    interval: Interval | None = None
    threshold: float | None = None  # the right side (a constant or a measured quantity)
    statistic: str | None = None  # what the test is on: "the difference", "Spearman's rho", ...
    statistic_value: float | None = None
    statistic_interval: Interval | None = None
    ratio: float | None = None  # left / right, when the right side's interval excludes 0
    ratio_interval: Interval | None = None
    p_value: float | None = None  # for the predicted direction, before correction
    p_adjusted: float | None = None  # after the study's correction
    effect_size: float | None = None
    n: int = 0  # reads (at the prediction's checkpoint, or its first)
    n_sequences: int = 0
    series: tuple[SeriesPoint, ...] = ()
    births: tuple[BirthEstimate, ...] = ()
    trajectories: tuple[Trajectory, ...] = ()  # only when the run asked for figures


class RunVerdict(Frozen):
    """A claim's verdict on one run of a seed matrix."""

    run: str
    verdict: Verdict
    reason: str
    predictions: tuple[PredictionResult, ...]
    evaluable: bool = True


class ClaimResult(Frozen):
    name: str
    statement: str
    line: int
    verdict: Verdict
    reason: str
    expect: Verdict | None = None
    pending: bool = False  # stated but not yet testable: a next test, never run
    predictions: tuple[PredictionResult, ...]
    runs: tuple[RunVerdict, ...] = ()  # a seed matrix: the verdict on each run
    exploratory: bool = False  # found by exploring this run (the spec says so)
    prior: str | None = None  # the status it had before this study
    evaluable: bool = True  # every prediction (on every run) could be judged
    status: str = ""  # derived from the fields above on every validation (see `_status`)

    @model_validator(mode="after")
    def _status(self) -> ClaimResult:
        """The research draft's five statuses. A Supported claim marked `exploratory` is a
        Current best hypothesis unless a seed matrix of at least two runs supports it. An
        Unsupported claim that could not be judged is *not evaluable*, apart from one whose
        test was inconclusive."""
        if self.pending:
            status = "next test"
        elif self.verdict == "unsupported" and not self.evaluable:
            status = "not evaluable"
        elif self.verdict == "negative":
            status = "negative result"
        elif self.verdict == "supported" and self.exploratory and len(self.runs) < 2:
            status = "current best hypothesis"
        else:
            status = self.verdict
        object.__setattr__(self, "status", status)
        return self

    @property
    def meets_expectation(self) -> bool | None:
        if self.expect is None or self.pending:
            return None
        return self.expect == self.verdict


class SelectionResult(Frozen):
    """What a `select` chose on its discovery probe (recorded, so a reader sees the units)."""

    name: str
    unit: str  # "neurons of L0.mlp" or "features of l2"
    probe: str
    steps: tuple[int, ...]  # the checkpoints of its window
    members: tuple[int, ...]  # neuron or feature ids, ascending (heads: layer · n_heads + head)
    values: tuple[float, ...] = ()  # each member's value of the ranking (or first) criterion
    labels: tuple[str, ...] = ()  # heads' names (`L1.H2`), one per member
    reason: str | None = None  # why nothing could be chosen, when it failed


class BasisProvenance(Frozen):
    name: str
    path: str  # relative to the run
    site: str
    width: int
    weights_sha256: str


class RunProvenance(Frozen):
    run: str  # the run directory's name
    data_hash: str
    checkpoints: dict[int, str]  # step -> SHA-256 of the weights file read
    bases: tuple[BasisProvenance, ...] = ()
    selections: tuple[SelectionResult, ...] = ()


class Provenance(Frozen):
    spec: str
    plan_hash: str
    runs: tuple[RunProvenance, ...]
    seed: int
    n_resamples: int
    correction: str
    hypodsl_version: str
    torch_version: str
    device: str
    # Float32 sums can differ in their last bits with the thread count (and the processor),
    # so results are a function of these too (docs/reproducibility.md): the same spec,
    # checkpoints, seed, jobs and threads give byte-identical results on one machine.
    jobs: int = 1  # checkpoints measured in parallel processes
    threads: int = 1  # torch threads of each measuring process


class StudyResult(Frozen):
    study: str
    confidence: float
    correction: str
    claims: tuple[ClaimResult, ...]
    provenance: Provenance

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("supported", "negative", "unsupported", "next test"), 0)
        for claim in self.claims:
            out["next test" if claim.pending else claim.verdict] += 1
        return out
