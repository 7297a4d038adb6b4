"""Many edited forward passes over one probe, stacked along the batch.

An edit replaces an activation somewhere in block l, so everything before it equals the clean
pass. Each edited run restarts from the latest clean activation before its first edit or
read, which the shared clean pass caches (`restart_names`): the stream entering block l, the
heads' z (for edits at or after them: the block's attention is not recomputed) or the neurons'
activations (for edits of an MLP: only its output projection is). From there it runs the
model's own steps (`Block.from_z`, `Block.from_post`) and hook points, and the last block's MLP
and the unembedding see only the answer positions when no edit needs the others; so do its
attention's queries (`CausalSelfAttention.mix_at`: keys and values at every position) when no
hook reads its scores, pattern or z (and its queries only there, when no hook reads q). Each
pass holds at most `max_rows` sequences: runs that restart at the same place are stacked along
the batch when the probe is short, and a long probe runs a window of its sequences at a time (a
pass over fewer rows keeps its activations in the processor's caches: faster per sequence,
README). A window stops after the last answer of its sequences, which are taken in the order of
their last answers (`_cut_windows`), unless a run keeps activations. Each run's edits act on its
own slice of the batch, told which of the probe's sequences it holds, at the probe's positions.

A run may restart from the full clean pass, or from `restart_pass`, which computes the last
block past its keys and values at the answers only (as `answer_pass` does) and so costs less;
a run that needs the last block elsewhere then restarts at its input.

The logits equal those of one full hooked forward pass per run (`interventions.run_edited`)
up to float rounding: the same operations on the same inputs, but on other shapes (a window, a
stack, the answers only), for which the CPU library may pick kernels that sum in another order
(tests/unit/test_batched.py states the tolerance and asserts it, in float32 and float64).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from runner.measure.interventions import ALL_SEQUENCES, Edit
from runner.measure.probe import CleanRun, ProbeBatch
from runner.model.hooks import hooks
from runner.model.transformer import Block, Transformer

DEFAULT_MAX_ROWS = 64  # sequences per pass: the fastest measured (README)
# The fewest positions a cut window keeps: on AVX-512 processors the softmax sums rows of at
# least this many floats (16 lanes) in the same order however long they are, so there a cut
# window rounds as the full row does; elsewhere it may differ in the last bits.
MIN_POSITIONS = 16

# Where in a block an activation lies: restart stages, in forward order.
PRE, Z, POST = 0, 1, 2
_AT_Z = (
    "attn.hook_z",
    "attn.hook_result",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.",
    "mlp.hook_pre",
)
_AT_POST = ("mlp.hook_post", "hook_mlp_out", "hook_resid_post")
# Hooks of the last block that see every position even when its MLP runs at the answers only.
_ALL_POSITIONS = ("hook_resid_pre", "ln1.", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                  "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z")  # fmt: skip
# Hooks of the last block that need its attention at every query position.
_ALL_QUERIES = ("attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z")

Restart = tuple[int, int]  # (block, stage); block -1: the embeddings, n_layers: ln_final


@dataclass(frozen=True)
class EditedRun:
    """One edited forward pass: its edits and the activations to keep from it."""

    key: str
    edits: tuple[Edit, ...]
    names: tuple[str, ...] = ()

    def hooks(self) -> list[str]:
        return [hook for hook, _ in self.edits] + list(self.names)


def restart_names(model: Transformer) -> list[str]:
    """Clean activations an edited run may restart from."""
    n = model.cfg.n_layers
    names = []
    for layer in range(n):
        names += [f"blocks.{layer}.{x}" for x in ("hook_resid_pre", "attn.hook_z")]
        names += [f"blocks.{layer}.{x}" for x in ("hook_resid_mid", "mlp.hook_post")]
    return [*names, f"blocks.{n - 1}.hook_resid_post"]


def position(hook: str, n_layers: int) -> Restart:
    """(block, stage) of an activation."""
    if hook.startswith("blocks."):
        _, layer, rest = hook.split(".", 2)
        stage = POST if rest.startswith(_AT_POST) else Z if rest.startswith(_AT_Z) else PRE
        return int(layer), stage
    if hook.startswith("ln_final."):
        return n_layers, PRE
    return -1, PRE


def restart_of(run: EditedRun, model: Transformer) -> Restart:
    """The first place whose computation the run changes or reads."""
    n = model.cfg.n_layers
    return min([position(hook, n) for hook in run.hooks()] + [(n, PRE)])


@dataclass(frozen=True)
class _Window:
    """The probe's sequences `seqs` (a slice, or their indices), their first `n_pos` positions,
    and the reads on them."""

    seqs: slice | torch.Tensor
    rows: slice  # its rows in the clean activations read: in the probe's order or `order`'s
    tokens: torch.Tensor  # [seq, pos]: pos may stop before the probe's last position
    reads: torch.Tensor  # [read] indices among the probe's reads
    read_seq: torch.Tensor  # [read] sequence index within the window
    answer: torch.Tensor  # [read]
    probe_pos: int  # the probe's positions

    @property
    def n_seq(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def cut(self) -> bool:
        return self.n_pos < self.probe_pos


def _windows(probe: ProbeBatch, size: int) -> list[_Window]:
    """The probe's sequences in windows of `size` (the whole probe when it fits in one)."""
    if size >= probe.n_seq:
        reads = torch.arange(len(probe), device=probe.device)
        whole = _Window(
            ALL_SEQUENCES, ALL_SEQUENCES, probe.tokens, reads, probe.read_seq, probe.answer,
            probe.n_pos,
        )  # fmt: skip
        return [whole]
    windows = []
    for start in range(0, probe.n_seq, size):
        stop = min(start + size, probe.n_seq)
        reads = ((probe.read_seq >= start) & (probe.read_seq < stop)).nonzero().flatten()
        window = _Window(
            slice(start, stop), slice(start, stop), probe.tokens[start:stop], reads,
            probe.read_seq[reads] - start, probe.answer[reads], probe.n_pos,
        )  # fmt: skip
        windows.append(window)
    return windows


def _cut_windows(probe: ProbeBatch, size: int) -> tuple[torch.Tensor, list[_Window]]:
    """The probe's sequences in windows of `size`, each window cut after the last answer of its
    sequences (nothing after it reaches a read: attention is causal). The sequences are taken
    in the order of their last answers (`order`, returned), so that a window's sequences end
    close together; a window's `rows` are its place in that order.

    A window keeps at least `MIN_POSITIONS` positions: the softmax over a shorter row may sum
    it in another order than over the probe's full row."""
    last = torch.full((probe.n_seq,), -1, dtype=torch.int64, device=probe.device)
    last = last.scatter_reduce(0, probe.read_seq, probe.answer, "amax")
    order = torch.argsort(last, stable=True)
    windows = []
    for start in range(0, probe.n_seq, size):
        seqs = order[start : start + size]
        n_pos = min(probe.n_pos, max(int(last[seqs].max()) + 1, MIN_POSITIONS))
        index_in_window = torch.full_like(last, -1)
        index_in_window[seqs] = torch.arange(len(seqs), device=probe.device)
        reads = (index_in_window[probe.read_seq] >= 0).nonzero().flatten()
        window = _Window(
            seqs, slice(start, start + len(seqs)), probe.tokens[seqs, :n_pos], reads,
            index_in_window[probe.read_seq[reads]], probe.answer[reads], probe.n_pos,
        )  # fmt: skip
        windows.append(window)
    return order, windows


class _Reordered:
    """A clean pass's activations with the probe's sequences in `order`, each activation
    reordered once, when first read (instead of gathered again by every chunk)."""

    def __init__(self, clean: CleanRun, order: torch.Tensor):
        self.clean, self.order = clean, order
        self.cache: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.cache:
            self.cache[name] = self.clean[name][self.order]
        return self.cache[name]


@torch.no_grad()
def run_many(
    model: Transformer,
    probe: ProbeBatch,
    clean: CleanRun,
    runs: Sequence[EditedRun],
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, CleanRun]:
    """Answer logits (and the activations each run names) of every edited run, by key.

    `clean` must cache `restart_names(model)` for runs that restart inside the model.
    """
    groups: dict[Restart, list[EditedRun]] = defaultdict(list)
    for run in runs:
        groups[_restart(run, model, clean)].append(run)
    per_pass = max(1, max_rows // max(probe.n_seq, 1))
    whole = _windows(probe, max(1, max_rows))
    order, cut = _cut_windows(probe, max(1, max_rows))
    reordered = _Reordered(clean, order)
    out: dict[str, CleanRun] = {}
    for restart in sorted(groups):
        members = groups[restart]
        for start in range(0, len(members), per_pass):
            chunk = members[start : start + per_pass]
            # A run that keeps activations keeps them at every position.
            keeps = any(run.names for run in chunk)
            windows, source = (whole, clean) if keeps else (cut, reordered)
            parts = [_run_chunk(model, window, clean, source, restart, chunk) for window in windows]
            out.update(_joined(chunk, windows, parts, len(probe)))
    return out


def _restart(run: EditedRun, model: Transformer, clean: CleanRun) -> Restart:
    """Where the run restarts from `clean`: its first edit or read, or the last block's input
    when the clean pass has the last block at the answers only and the run needs it elsewhere."""
    restart = restart_of(run, model)
    entering_last = (model.cfg.n_layers - 1, PRE)
    needs_elsewhere = not _answers_only(run.hooks(), restart, model.cfg.n_layers)
    if clean.last_block_at_answers and restart > entering_last and needs_elsewhere:
        return entering_last
    return restart


def restart_pass(model: Transformer, probe: ProbeBatch) -> CleanRun:
    """The clean pass that edited runs restart from (`restart_names`), with the last block
    past its keys and values at the answers only, as `answer_pass` computes it: its z, resid_mid,
    neurons and resid_post are cached at the answers and NaN elsewhere
    (`CleanRun.last_block_at_answers`). Cheaper than the full pass by the last block's queries,
    MLP and unembedding elsewhere; `run_many` restarts a run that needs those activations
    anywhere else at the last block's input. Values equal the full pass's where computed."""
    n = model.cfg.n_layers
    last = f"blocks.{n - 1}."
    at_answers = [last + x for x in ("attn.hook_z", "hook_resid_mid", "mlp.hook_post")]
    at_answers.append(last + "hook_resid_post")
    cache: dict[str, torch.Tensor] = {}

    def store(x: torch.Tensor, name: str) -> None:
        cache[name] = x

    (window,) = _windows(probe, max(1, probe.n_seq))
    restarted = _Restarted(model, window, CleanRun(torch.empty(0), {}), 1)
    stores = [(name, store) for name in restart_names(model) if name != last + "attn.hook_z"]
    with torch.no_grad(), hooks(model, stores):
        resid = model.embed_tokens(probe.tokens)
        for index in range(n - 1):
            resid = model.block(index)(resid)
        block = model.block(n - 1)
        pre = block.hook_resid_pre(resid)
        slots, slot_of_read = restarted.query_slots()
        z = block.attn.mix_at(block.ln1(pre), slots, split=True)
        z = z[window.read_seq, slot_of_read][None]
        logits = restarted.unembed(restarted._last_block_at_answers(block, pre, z))[0]
    cache[last + "attn.hook_z"] = z
    for name in at_answers:
        cache[name] = _spread(cache[name][0], probe)
    return CleanRun(logits, cache, last_block_at_answers=True)


def _spread(x: torch.Tensor, probe: ProbeBatch) -> torch.Tensor:
    """x [read, ...] at the answers -> [seq, pos, ...], NaN wherever it was not computed (so
    that a read there shows)."""
    spread = x.new_full((probe.n_seq, probe.n_pos, *x.shape[1:]), float("nan"))
    return spread.index_put((probe.read_seq, probe.answer), x)


def answer_pass(
    model: Transformer,
    probe: ProbeBatch,
    max_rows: int = DEFAULT_MAX_ROWS,
    keep_graph: bool = False,
) -> CleanRun:
    """The clean pass's answer logits, computed as an edited run with no edit: the probe a
    window at a time, the last block and the unembedding at the answers only. Equal to the full
    forward pass's up to float rounding, and cheaper, for quantities that read nothing but the
    logits.
    Its cache: the stream after the last block and the final LayerNorm's scale at the answers
    ([read, d_model] and [read, 1]), the witnesses `finite` reads of such a pass.

    With `keep_graph` the logits stay differentiable (the loss gradient is taken from the same
    pass that gave the logits); the cache is detached either way."""
    kept: list[torch.Tensor] = []
    logits, stream, scale = [], [], []
    windows = _windows(probe, max(1, max_rows))
    with torch.set_grad_enabled(keep_graph):
        with hooks(model, [("ln_final.hook_scale", lambda x, name: kept.append(x))]):
            for window in windows:
                empty = CleanRun(torch.empty(0), {})
                restarted = _Restarted(model, window, empty, 1, split=not keep_graph)
                part = restarted.stream((-1, PRE), at_answers=True, queries=True)
                logits.append(restarted.unembed(part)[0])
                stream.append(part[0].detach())
                scale.append(kept.pop()[0].detach())
        order = torch.argsort(torch.cat([window.reads for window in windows]))
        last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
        cache = {last: torch.cat(stream)[order], "ln_final.hook_scale": torch.cat(scale)[order]}
        return CleanRun(torch.cat(logits)[order], cache)


def answer_logits(
    model: Transformer, probe: ProbeBatch, max_rows: int = DEFAULT_MAX_ROWS
) -> torch.Tensor:
    """[read, vocab] the clean pass's answer logits as `answer_pass` computes them, but
    differentiable (for the loss gradient): equal to the full forward pass's up to float
    rounding (the backward pass sums in another order)."""
    return answer_pass(model, probe, max_rows, keep_graph=True).logits


def answer_run(
    model: Transformer, probe: ProbeBatch, names: Sequence[str], queries: bool = True
) -> CleanRun:
    """The clean pass over the whole probe with the last block's MLP, the final LayerNorm and
    the unembedding at the answer positions only (with `queries`, also its attention's
    queries), caching `names` without detaching them: for differentiating quantities that read
    those activations at the answers only (`paths.answers_suffice`).

    A cached activation computed at the answers only is spread back to [seq, pos, ...], its
    values at the answer positions and NaN elsewhere, so that a read anywhere else shows. With
    `queries` the last block's attention scores, pattern and z are not computed at all, and not
    cached. Values equal the full pass's at the answers (tests/unit/test_batched.py)."""
    n_layers = model.cfg.n_layers
    cache: dict[str, torch.Tensor] = {}

    def store(x: torch.Tensor, name: str) -> None:
        cache[name] = x

    (window,) = _windows(probe, max(1, probe.n_seq))
    restarted = _Restarted(model, window, CleanRun(torch.empty(0), {}), 1, split=False)
    with hooks(model, [(name, store) for name in names]):
        logits = restarted.unembed(restarted.stream((-1, PRE), at_answers=True, queries=queries))
    for name, x in cache.items():
        if _computed_at_answers(name, n_layers):
            cache[name] = _spread(x[0], probe)
    return CleanRun(logits[0], cache)


def _computed_at_answers(name: str, n_layers: int) -> bool:
    """Whether the answers-only pass computes this activation at the answer positions only."""
    last = f"blocks.{n_layers - 1}."
    if name.startswith(last):
        return not name[len(last) :].startswith(_ALL_POSITIONS)
    return name.startswith("ln_final.")


def _joined(
    chunk: list[EditedRun],
    windows: list[_Window],
    parts: list[list[CleanRun]],
    n_reads: int,
) -> dict[str, CleanRun]:
    """Each run's logits and activations over the whole probe, from its windows'."""
    if len(windows) == 1:
        return {run.key: part for run, part in zip(chunk, parts[0], strict=True)}
    out = {}
    for i, run in enumerate(chunk):
        first = parts[0][i].logits
        logits = first.new_empty(n_reads, *first.shape[1:])
        for window, part in zip(windows, parts, strict=True):
            logits[window.reads] = part[i].logits
        cache = {name: torch.cat([part[i][name] for part in parts]) for name in run.names}
        out[run.key] = CleanRun(logits, cache)
    return out


def _run_chunk(
    model: Transformer,
    window: _Window,
    clean: CleanRun,
    source: CleanRun | _Reordered,
    restart: Restart,
    chunk: list[EditedRun],
) -> list[CleanRun]:
    """The chunk's runs over one window, restarting from `source` (the clean pass's
    activations, in the order the window's `rows` index)."""
    caches: list[dict[str, torch.Tensor]] = [{} for _ in chunk]
    by_hook: dict[str, list[tuple[int, Edit | None]]] = defaultdict(list)
    for i, run in enumerate(chunk):
        for edit in run.edits:
            by_hook[edit[0]].append((i, edit))
        for name in run.names:
            by_hook[name].append((i, None))
    fwd_hooks = [(hook, _sliced(members, window, caches)) for hook, members in by_hook.items()]
    n_layers = model.cfg.n_layers
    at_answers = _answers_only(list(by_hook), restart, n_layers)
    if clean.last_block_at_answers and not at_answers and restart > (n_layers - 1, PRE):
        raise ValueError("the clean pass has the last block at the answers only; restart earlier")
    queries = at_answers and not any(
        hook.startswith(f"blocks.{n_layers - 1}.{x}") for hook in by_hook for x in _ALL_QUERIES
    )
    with hooks(model, fwd_hooks):
        restarted = _Restarted(model, window, source, len(chunk))
        logits = restarted.logits(restart, at_answers, queries)
    return [CleanRun(logits[i], caches[i]) for i in range(len(chunk))]


def _answers_only(hooked: list[str], restart: Restart, n_layers: int) -> bool:
    """Whether the last block's MLP and the unembedding may run at the answer positions only:
    no hook there needs the other positions."""
    last = f"blocks.{n_layers - 1}."
    for hook in hooked:
        if hook.startswith("ln_final."):
            return False
        if hook.startswith(last):
            rest = hook[len(last) :]
            post_restart = restart == (n_layers - 1, POST) and rest == "mlp.hook_post"
            if not (rest.startswith(_ALL_POSITIONS) or post_restart):
                return False
    return True


def _sliced(members: list[tuple[int, Edit | None]], window: _Window, caches: list[dict]):
    """One hook over the stacked batch: member i's edit (or store) acts on rows i·n .. (i+1)·n,
    which hold the window's n sequences.

    Edits run in the order given, so several edits of one run at one activation compose as in
    `run_edited`; a store keeps the activation after every edit of its run there.
    """

    def fn(x: torch.Tensor, name: str) -> torch.Tensor:
        parts = list(x.split(window.n_seq))
        for i, edit in members:
            if edit is not None:
                if window.cut:  # the edit is made for the probe's positions: padded to them
                    edited = edit[1](_padded(parts[i], name, window.probe_pos), name, window.seqs)
                    parts[i] = _cut(edited, name, window.n_pos)
                else:
                    parts[i] = edit[1](parts[i], name, window.seqs)
        for i, edit in members:
            if edit is None:
                caches[i][name] = parts[i].detach()
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    return fn


def _position_dims(name: str) -> tuple[int, ...]:
    """The dimensions of an activation that index positions: [batch, head, query, key] for the
    attention's scores and pattern, [batch, pos, ...] for every other."""
    return (2, 3) if name.endswith(("hook_attn_scores", "hook_pattern")) else (1,)


def _padded(x: torch.Tensor, name: str, n_pos: int) -> torch.Tensor:
    """x with zeros after its positions, to n_pos of them."""
    for dim in _position_dims(name):
        shape = list(x.shape)
        shape[dim] = n_pos - x.shape[dim]
        x = torch.cat([x, x.new_zeros(shape)], dim)
    return x


def _cut(x: torch.Tensor, name: str, n_pos: int) -> torch.Tensor:
    """x's first n_pos positions."""
    for dim in _position_dims(name):
        x = x.narrow(dim, 0, n_pos)
    return x


class _Restarted:
    """k stacked copies of the clean pass over a window of the probe, continued from a restart
    point."""

    def __init__(
        self,
        model: Transformer,
        window: _Window,
        clean: CleanRun | _Reordered,
        k: int,
        split: bool = True,
    ):
        self.model, self.window, self.clean, self.k = model, window, clean, k
        self.split = split  # the last block's q at the answers only (`mix_at`): not differentiated

    def stacked(self, name: str) -> torch.Tensor:
        x = self.clean[name][self.window.rows]
        if self.window.cut:
            x = x[:, : self.window.n_pos]
        return x if self.k == 1 else x.repeat(self.k, *[1] * (x.dim() - 1))

    def answers(self, x: torch.Tensor) -> torch.Tensor:
        """[k·seq, pos, ...] -> [k, read, ...] at each read's answer position."""
        stacked = x.view(self.k, self.window.n_seq, *x.shape[1:])
        return stacked[:, self.window.read_seq, self.window.answer]

    def query_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([k·seq, M] the distinct answer positions of each sequence, padded with its first;
        [read] each read's slot among them), M >= 2 (see `CausalSelfAttention.mix_at`)."""
        window = self.window
        keys = window.read_seq * window.n_pos + window.answer
        distinct, slot_of_read = torch.unique(keys, return_inverse=True)  # sorted
        seq, pos = distinct // window.n_pos, distinct % window.n_pos
        counts = torch.bincount(seq, minlength=window.n_seq)
        rank = torch.arange(len(distinct), device=keys.device) - (counts.cumsum(0) - counts)[seq]
        width = max(2, int(counts.max()))
        first = torch.zeros_like(counts)  # 0 for a sequence without reads: never read
        first[seq[rank == 0]] = pos[rank == 0]
        slots = first[:, None].repeat(1, width)
        slots[seq, rank] = pos
        return slots.repeat(self.k, 1), rank[slot_of_read]

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.model.ln_final(x), self.model.embed.weight)

    def logits(self, restart: Restart, at_answers: bool, queries: bool = False) -> torch.Tensor:
        """Answer logits [k, read, vocab]; `queries`: the last block's attention at the answer
        positions only (needs `at_answers`)."""
        stream = self.stream(restart, at_answers, queries)
        return self.unembed(stream) if at_answers else self.answers(self.unembed(stream))

    def _last_block_at_answers(
        self, block: Block, pre: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """[k, read, d_model] the stream after the last block at the answers, from the stream
        entering it [k·seq, pos, d_model] and its heads' z at the answers [k, read, nh, hs]."""
        mid = block.hook_resid_mid(self.answers(pre) + block.hook_attn_out(block.attn.project(z)))
        return block.hook_resid_post(mid + block.hook_mlp_out(block.mlp(block.ln2(mid))))

    def stream(self, restart: Restart, at_answers: bool, queries: bool = False) -> torch.Tensor:
        """The residual stream after the last block: [k, read, d_model] at the answers when
        `at_answers`, else [k·seq, pos, d_model]."""
        model, (block, stage) = self.model, restart
        n = model.cfg.n_layers
        if block < 0:
            resid = model.embed_tokens(self.window.tokens.repeat(self.k, 1))
        elif block == n:
            resid = self.stacked(f"blocks.{n - 1}.hook_resid_post")
        for index in range(max(block, 0), n):
            b = model.block(index)
            here = stage if index == block else PRE
            last = at_answers and index == n - 1
            if here == POST:
                mid = self.stacked(f"blocks.{index}.hook_resid_mid")
                post = b.mlp.hook_post(self.stacked(f"blocks.{index}.mlp.hook_post"))
                if last:
                    return self.answers(mid) + b.mlp.c_proj(self.answers(post))
                resid = b.from_post(mid, post)
                continue
            if here == Z:
                pre = self.stacked(f"blocks.{index}.hook_resid_pre")
                z = b.attn.hook_z(self.stacked(f"blocks.{index}.attn.hook_z"))
            else:
                source = self.stacked(f"blocks.{index}.hook_resid_pre") if index == block else resid
                pre = b.hook_resid_pre(source)
                if last and queries:
                    slots, slot_of_read = self.query_slots()
                    z_at = b.attn.mix_at(b.ln1(pre), slots, split=self.split)
                    z_at = z_at.view(self.k, self.window.n_seq, *z_at.shape[1:])
                    return self._last_block_at_answers(
                        b, pre, z_at[:, self.window.read_seq, slot_of_read]
                    )
                z = b.attn.mix(b.ln1(pre))
            if last:
                return self._last_block_at_answers(b, pre, self.answers(z))
            resid = b.from_z(pre, z)
        return self.answers(resid) if at_answers else resid
