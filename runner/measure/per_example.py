"""Per-example loss gradients and their Gram geometry.

An example is a read: its loss L_i = −log softmax(l)_y at its answer position depends only on
the sequence up to that position, so each read is computed on its own copy of its sequence,
cut after the answer (reads sorted by answer position, so a chunk is cut at its longest).
Gradients are rows of a [read, n_params] matrix in `model.named_parameters()` order.

Three ways to compute them (benchmarks/measure.py times each on this machine):

- `einsum`: one forward and one backward pass over a chunk of reads, then per-layer products of
  each layer's inputs and output gradients (for a linear layer, ∇W_i = Σ_t g_{i,t} x_{i,t}^T).
- `vmap`: `torch.func.vmap` over `torch.func.grad` of one read's loss.
- `loop`: one backward pass per read.

Gram summaries: with G_ij = <∇L_i, ∇L_j> and groups (key, value, or (key, value) pair), each read
gets its mean inner product with the other reads of its group (`within`) and with the reads of
other groups (`between`). Their means over reads are the mean within- and between-group Gram
entries, computed without forming G: with S_g the sum of group g's gradients,
within_i = <∇L_i, S_g − ∇L_i> / (n_g − 1) and between_i = <∇L_i, S − S_g> / (N − n_g).
`gram(by=...)` is within − between per read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runner.kv import vocab
from runner.measure.probe import ProbeBatch
from runner.model.transformer import LayerNorm, Transformer

METHODS = ("einsum", "vmap", "loop")
GROUPS = ("key", "value", "pair")


def read_rows(probe: ProbeBatch, reads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [read, pos] of each read's own sequence, cut after the longest answer, and answers."""
    answer = probe.answer[reads]
    n_pos = int(answer.max()) + 1
    return probe.tokens[probe.read_seq[reads], :n_pos], answer


def chunks_by_length(probe: ProbeBatch, chunk: int) -> Iterator[torch.Tensor]:
    """Read indices in chunks of similar answer position."""
    order = torch.argsort(probe.answer, stable=True)
    yield from order.split(chunk)


def _read_loss_sum(logits: torch.Tensor, answer: torch.Tensor, target: torch.Tensor):
    rows = logits[torch.arange(len(answer)), answer]
    return F.cross_entropy(rows, target, reduction="sum")


def _einsum_chunk(model: Transformer, tokens, answer, target, out: torch.Tensor) -> torch.Tensor:
    """Per-example gradients of a chunk of reads, written into out[:n] (reused across chunks:
    fresh multi-megabyte tensors cost more in page faults than the arithmetic)."""
    captured: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    modules = dict(model.named_modules())

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            captured[name] = output
            if isinstance(module, nn.Linear):
                inputs[name] = args[0].detach()

        return hook

    layers = [n for n, m in modules.items() if isinstance(m, (nn.Linear, LayerNorm))]
    normalized = [f"{n}.hook_normalized" for n, m in modules.items() if isinstance(m, LayerNorm)]
    names = [*layers, "hook_embed", "hook_pos_embed"]
    try:
        for name in names + normalized:
            handles.append(modules[name].register_forward_hook(keep(name)))
        logits = model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    loss = _read_loss_sum(logits, answer, target)
    wrt = [*(captured[n] for n in names), logits]
    grads = dict(zip([*names, "logits"], torch.autograd.grad(loss, wrt), strict=True))
    n = len(answer)
    out = out[:n]
    views, offset = {}, 0
    for name, param in model.named_parameters():
        views[name] = out[:, offset : offset + param.numel()].view(n, *param.shape)
        offset += param.numel()
    with torch.no_grad():
        for name in layers:
            g = grads[name]
            if isinstance(modules[name], nn.Linear):
                torch.bmm(g.transpose(1, 2), inputs[name], out=views[f"{name}.weight"])
            else:
                x_hat = captured[f"{name}.hook_normalized"].detach()
                views[f"{name}.weight"].copy_((g * x_hat).sum(dim=1))
            views[f"{name}.bias"].copy_(g.sum(dim=1))
        one_hot = F.one_hot(tokens, model.cfg.vocab_size).to(out.dtype)
        embed = views["embed.weight"]
        torch.bmm(one_hot.transpose(1, 2), grads["hook_embed"], out=embed)
        rows = torch.arange(n)
        final = captured["ln_final"].detach()[rows, answer]  # [read, d_model]
        embed.baddbmm_(grads["logits"][rows, answer][:, :, None], final[:, None, :])
        pos = views["pos_embed.weight"]
        pos.zero_()
        pos[:, : tokens.shape[1]] = grads["hook_pos_embed"]
    return out


def _vmap_chunk(model: Transformer, tokens, answer, target, out: torch.Tensor) -> torch.Tensor:
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(params, tokens, answer, target):
        logits = torch.func.functional_call(model, params, (tokens[None],))[0]
        row = logits.gather(0, answer.view(1, 1).expand(1, logits.shape[-1]))
        return F.cross_entropy(row, target.view(1))

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0, 0))(
        params, tokens, answer, target
    )
    n = len(answer)
    return torch.cat([grads[name].reshape(n, -1) for name in params], dim=1, out=out[:n])


def _loop_chunk(model: Transformer, tokens, answer, target, out: torch.Tensor) -> torch.Tensor:
    params = [w for _, w in model.named_parameters()]
    for i in range(len(answer)):
        length = int(answer[i]) + 1
        logits = model(tokens[i : i + 1, :length])
        loss = F.cross_entropy(logits[0, answer[i]][None], target[i : i + 1])
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)], out=out[i])
    return out[: len(answer)]


_CHUNK_FNS = {"einsum": _einsum_chunk, "vmap": _vmap_chunk, "loop": _loop_chunk}


def per_example_gradients(
    model: Transformer, probe: ProbeBatch, method: str = "einsum", chunk: int = 128
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(read indices, gradients [chunk, n_params]) chunk by chunk; memory is bounded by `chunk`.

    The gradients yielded are valid until the next chunk is computed (one buffer is reused):
    copy what you keep.
    """
    if method not in _CHUNK_FNS:
        raise ValueError(f"unknown method `{method}`; use one of {', '.join(METHODS)}")
    fn = _CHUNK_FNS[method]
    n_params = sum(w.numel() for w in model.parameters())
    first = next(model.parameters())
    buffer = torch.empty(
        min(chunk, max(len(probe), 1)), n_params, dtype=first.dtype, device=first.device
    )
    for reads in chunks_by_length(probe, chunk):
        tokens, answer = read_rows(probe, reads)
        yield reads, fn(model, tokens, answer, probe.target[reads], buffer)


def group_labels(probe: ProbeBatch, by: str) -> np.ndarray:
    """[read] group of each read: its key, its value, or its (key, value) pair.

    On a task from a task file the key is the token at the scored position and the value is
    the target, as token ids.
    """
    if probe.answer_tokens is None:
        key = probe.tokens[probe.read_seq, probe.answer].cpu().numpy() - vocab.FIRST_KEY
        value = probe.target.cpu().numpy() - vocab.FIRST_VALUE
        n_values = vocab.N_VALUES
    else:
        key = probe.tokens[probe.read_seq, probe.answer].cpu().numpy()
        value = probe.target.cpu().numpy()
        n_values = int(max(probe.tokens.max().item(), probe.target.max().item(), 0)) + 1
    if by == "key":
        return key
    if by == "value":
        return value
    if by == "pair":
        return key * n_values + value
    raise ValueError(f"unknown grouping `{by}`; use one of {', '.join(GROUPS)}")


def gram_summary(
    model: Transformer,
    probe: ProbeBatch,
    labels: np.ndarray,
    method: str = "einsum",
    chunk: int = 128,
) -> dict[str, torch.Tensor]:
    """[read] `within` and `between`: mean Gram entries with the same and other groups.

    Two passes over the per-example gradients: the first sums them per group, the second takes
    each read's inner products with those sums. NaN where a group has one read (no `within`).
    """
    groups, index = np.unique(labels, return_inverse=True)
    first = next(model.parameters())
    index_t = torch.as_tensor(index, device=first.device)
    n_params = sum(w.numel() for w in model.parameters())
    sums = torch.zeros(len(groups), n_params, dtype=first.dtype, device=first.device)
    for reads, grads in per_example_gradients(model, probe, method, chunk):
        sums.index_add_(0, index_t[reads], grads)
    total = sums.sum(dim=0)
    sizes = torch.as_tensor(np.bincount(index, minlength=len(groups)), dtype=sums.dtype)
    sizes = sizes.to(sums.device)
    within = torch.empty(len(probe), dtype=sums.dtype, device=sums.device)
    between = torch.empty(len(probe), dtype=sums.dtype, device=sums.device)
    n = len(probe)
    for reads, grads in per_example_gradients(model, probe, method, chunk):
        own = sums[index_t[reads]]
        size = sizes[index_t[reads]]
        # The same reduction for both dots: a read alone in its group has own == grads bit for
        # bit, so its `within` is exactly 0 / 0 = NaN, not a rounding error divided by zero.
        to_own = (grads * own).sum(dim=1)
        self_dot = (grads * grads).sum(dim=1)
        within[reads] = (to_own - self_dot) / (size - 1)
        between[reads] = (grads @ total - to_own) / (n - size)
    return {"within": within, "between": between}


def gram_matrix(gradients: torch.Tensor) -> torch.Tensor:
    """G = J J^T for per-example gradients J [example, n_params], as one matrix product."""
    return gradients @ gradients.T
