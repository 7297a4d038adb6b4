"""Hook points: every activation a claim can name has an address.

A `HookPoint` is an identity module wrapped around one activation; its dotted module path
(`blocks.1.attn.hook_pattern`) is the activation's name, following TransformerLens. Hooks are
attached only inside the `hooks` context manager, which removes them in `finally`: a hook left
attached after an exception would silently change every later forward pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# fn(activation, name) -> replacement activation, or None to leave it unchanged.
HookFn = Callable[[torch.Tensor, str], torch.Tensor | None]


class HookPoint(nn.Module):
    """Identity on the forward pass; the place where hooks read or replace an activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def resolve(model: nn.Module, name: str) -> HookPoint:
    """The hook point `name`; an unknown name gets the closest one as a hint."""
    # Looked up by its path first: edited passes attach hooks once per window of the probe, and
    # listing every module each time cost 3% of the head-ablation sweep.
    found = _submodule(model, name)
    if isinstance(found, HookPoint):
        return found
    close = difflib.get_close_matches(name, list(hook_points(model)), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise KeyError(f"no hook point `{name}`{hint}")


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name) if name else None
    except AttributeError:
        return None


@contextmanager
def hooks(model: nn.Module, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[nn.Module]:
    """Attach forward hooks for the duration of the block, and always remove them."""
    handles = []
    per_head = {n.rsplit(".hook_result", 1)[0] for n, _ in fwd_hooks if n.endswith("hook_result")}
    # Attention modules (whose per-head results are switched on here), typed loosely: this
    # module cannot import the model's classes, which import it.
    found = [_submodule(model, name) for name in per_head]
    attention: list[Any] = [module for module in found if module is not None]
    try:
        for name, fn in fwd_hooks:
            point = resolve(model, name)
            handles.append(point.register_forward_hook(_adapt(fn, name)))
        for attn in attention:
            attn.per_head_result = True
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for attn in attention:
            attn.per_head_result = False


def _adapt(
    fn: HookFn, name: str
) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]:
    def forward_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return fn(output, name)

    return forward_hook


def run_with_cache(
    model: nn.Module,
    tokens: torch.Tensor,
    names: Sequence[str] | None = None,
    detach: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the activations at `names` (every hook point when None).

    With `detach=False` the cached activations stay in the autograd graph, for quantities that
    are differentiated with respect to the parameters.
    """
    cache: dict[str, torch.Tensor] = {}

    def store(x: torch.Tensor, name: str) -> None:
        cache[name] = x.detach() if detach else x

    wanted = list(hook_points(model)) if names is None else list(names)
    with hooks(model, [(n, store) for n in wanted]):
        logits = model(tokens)
    return logits, cache
