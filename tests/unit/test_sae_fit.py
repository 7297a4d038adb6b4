"""Fitting a basis: a known sparse dictionary is recovered; the fit is deterministic, resumes to
the same weights after a kill, and the stored basis is SAELens's layout, checked on load."""

from __future__ import annotations

import json

import pytest
import torch

from runner.features import fit as ft
from runner.features.basis import (
    BasisError,
    BasisInfo,
    FittedRun,
    load_basis,
    save_basis,
)
from runner.features.fit import FitSettings, fold_scale, train_sae

D_IN, N_TRUE = 24, 12


def sparse_activations(n: int = 12000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors that are sparse sums of N_TRUE unit directions (each on w.p. 0.08, size 1..3)."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(N_TRUE, D_IN, generator=gen)
    directions = directions / directions.norm(dim=1, keepdim=True)
    on = torch.rand(n, N_TRUE, generator=gen) < 0.08
    size = 1 + 2 * torch.rand(n, N_TRUE, generator=gen)
    x = (on * size) @ directions + 0.01 * torch.randn(n, D_IN, generator=gen)
    return x, directions


SETTINGS = FitSettings(site="x", width=24, l1=0.1, train_steps=500, batch_size=512, lr=3e-3)


def test_every_true_direction_is_recovered_at_cosine_090():
    x, truth = sparse_activations()
    sae, _ = train_sae(x, SETTINGS)
    learned = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    best = (truth @ learned.T).max(dim=1).values
    assert best.min().item() >= 0.9, best
    # and a basis fitted on noise alone does not "recover" these directions
    noise = torch.randn_like(x)
    random_sae, _ = train_sae(noise, SETTINGS)
    random_dirs = random_sae.W_dec / random_sae.W_dec.norm(dim=1, keepdim=True)
    assert (truth @ random_dirs.T).max(dim=1).values.min().item() < 0.9


def test_the_fit_is_deterministic_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    x, _ = sparse_activations(4000)
    settings = SETTINGS.model_copy(update={"train_steps": 240, "batch_size": 128})
    whole, _ = train_sae(x, settings)
    again, _ = train_sae(x, settings)
    for a, b in zip(whole.state().values(), again.state().values(), strict=True):
        assert torch.equal(a, b)

    state = tmp_path / ft.STATE_FILE
    monkeypatch.setattr(ft, "SAVE_EVERY", 40)  # saves at 40, 80, 120: the kill at 150 loses 30

    class Killed(Exception):
        pass

    def kill_at(step: int):
        def progress(phase: str, done: int, total: int) -> None:
            if done == step:
                raise Killed

        return progress

    with pytest.raises(Killed):
        train_sae(x, settings, state, kill_at(150))  # killed between two saves
    assert state.exists()
    resumed, _ = train_sae(x, settings, state)
    for a, b in zip(whole.state().values(), resumed.state().values(), strict=True):
        assert torch.equal(a, b)
    other = settings.model_copy(update={"l1": 0.2})
    with pytest.raises(BasisError, match="other settings"):
        train_sae(x, other, state)


def test_folding_the_input_scale_keeps_the_feature_activations():
    x, _ = sparse_activations(2000)
    sae, _ = train_sae(x / 3.0, SETTINGS.model_copy(update={"train_steps": 200}))
    folded = fold_scale(sae, 3.0)
    with torch.no_grad():
        assert torch.allclose(folded.encode(x), sae.encode(x / 3.0), atol=1e-5)
        assert torch.allclose(folded.decode(folded.encode(x)), 3.0 * sae(x / 3.0)[0], atol=1e-4)


def _stored(tmp_path):
    x, _ = sparse_activations(2000)
    sae, _ = train_sae(x, SETTINGS.model_copy(update={"train_steps": 50}))
    run = FittedRun(name="r", config_hash="c" * 16, data_hash="d" * 64)
    info = BasisInfo(
        site="blocks.0.hook_resid_post", d_in=D_IN, d_sae=24, run=run, checkpoints={0: "a"},
        fit={}, weights_sha256="",
    )  # fmt: skip
    directory = tmp_path / "basis"
    save_basis(directory, sae, info, "r", 96)
    return directory, run, sae


def test_a_stored_basis_is_in_saelens_layout_and_loads_back(tmp_path):
    directory, run, sae = _stored(tmp_path)
    cfg = json.loads((directory / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and cfg["d_in"] == D_IN and cfg["d_sae"] == 24
    assert cfg["hook_name"] == "blocks.0.hook_resid_post" and cfg["apply_b_dec_to_input"]
    from safetensors.torch import load_file

    weights = load_file(str(directory / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "W_enc": (D_IN, 24), "b_enc": (24,), "W_dec": (24, D_IN), "b_dec": (D_IN,)
    }  # fmt: skip
    loaded = load_basis(directory, run)
    assert torch.equal(loaded.sae.W_dec, sae.W_dec)


def test_a_basis_moved_to_a_device_is_a_copy_and_leaves_the_shared_one_in_place(tmp_path):
    directory, run, _ = _stored(tmp_path)
    basis = load_basis(directory, run)
    assert basis.to("cpu") is basis
    moved = basis.to("meta")  # a device every machine has: what cuda would do, without one
    assert moved.sae.W_enc.device.type == "meta" and moved.info is basis.info
    assert all(w.device.type == "cpu" for w in basis.sae.parameters())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "sae_weights.safetensors").write_bytes(b"junk"), "corrupt basis"),
        (lambda d: (d / "hypodsl_basis.json").write_text("{"), "invalid JSON"),
        (lambda d: (d / "cfg.json").write_text('{"architecture": "topk", "d_in": 24, '
                                               '"d_sae": 24, "hook_name": "x"}'), "standard"),
        (lambda d: (d / "cfg.json").unlink(), "no such file"),
        (lambda d: (d / "sae_weights.safetensors").unlink(), "missing"),
    ],
    ids=["weights", "info", "architecture", "no-cfg", "no-weights"],
)  # fmt: skip
def test_a_damaged_basis_is_refused_with_the_file_named(tmp_path, damage, message):
    directory, run, _ = _stored(tmp_path)
    damage(directory)
    with pytest.raises(BasisError, match=message):
        load_basis(directory, run)


def test_a_basis_fitted_on_another_run_is_refused(tmp_path):
    directory, run, _ = _stored(tmp_path)
    other = run.model_copy(update={"data_hash": "e" * 64})
    with pytest.raises(BasisError, match="fitted on run `r`"):
        load_basis(directory, other)
