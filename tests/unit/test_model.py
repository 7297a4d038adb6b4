"""The hooked model: GPT-2's architecture, exact against a plain forward, hooks removed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runner.model.configs import NAMED_CONFIGS
from runner.model.hooks import hook_points, hooks, run_with_cache
from runner.model.transformer import ModelConfig, Transformer

pytestmark = pytest.mark.numerics  # run again under other CPU kernels (Makefile)

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64)


@pytest.fixture
def model() -> Transformer:
    torch.manual_seed(0)
    m = Transformer(CFG).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so they are exercised
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))


def plain_forward(m: Transformer, tokens: torch.Tensor, library_layer_norm: bool) -> torch.Tensor:
    """An independent GPT-2 forward from the state dict alone: no modules, no hooks."""
    sd, cfg = m.state_dict(), m.cfg
    B, T = tokens.shape
    H, hs = cfg.n_heads, cfg.d_head

    def ln(x: torch.Tensor, prefix: str) -> torch.Tensor:
        w, b = sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]
        if library_layer_norm:
            return F.layer_norm(x, (cfg.d_model,), w, b, cfg.ln_eps)
        x = x - x.mean(-1, keepdim=True)
        return x / (x.pow(2).mean(-1, keepdim=True) + cfg.ln_eps).sqrt() * w + b

    x = sd["embed.weight"][tokens] + sd["pos_embed.weight"][torch.arange(T)]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        h = ln(x, p + "ln1")
        q, k, v = F.linear(h, sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]).split(
            cfg.d_model, dim=2
        )
        q, k, v = (t.view(B, T, H, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        z = (att @ v).transpose(1, 2).reshape(B, T, cfg.d_model)
        x = x + F.linear(z, sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"])
        h = F.gelu(
            F.linear(ln(x, p + "ln2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]),
            approximate="tanh",
        )
        x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return F.linear(ln(x, "ln_final"), sd["embed.weight"])


def test_reference_config_has_the_drafts_parameter_count():
    assert Transformer(NAMED_CONFIGS["reference"].model).n_parameters() == 626_048


def test_forward_equals_a_plain_gpt2_forward_bit_for_bit(model, tokens):
    with torch.no_grad():
        ours = model(tokens)
        assert torch.equal(ours, plain_forward(model, tokens, library_layer_norm=False))
        # and it is GPT-2: torch's own LayerNorm gives the same logits up to rounding
        assert torch.allclose(
            ours, plain_forward(model, tokens, library_layer_norm=True), atol=1e-5
        )


def test_caching_every_activation_changes_nothing(model, tokens):
    with torch.no_grad():
        clean = model(tokens)
        names = [n for n in hook_points(model) if not n.endswith("hook_result")]
        logits, cache = run_with_cache(model, tokens, names)
    assert torch.equal(logits, clean)
    assert set(cache) == set(names)


def test_per_head_results_sum_to_the_attention_output(model, tokens):
    with torch.no_grad():
        clean = model(tokens)
        logits, cache = run_with_cache(model, tokens)
    assert torch.allclose(logits, clean, atol=1e-5)
    bias = model.blocks[1].attn.c_proj.bias
    total = cache["blocks.1.attn.hook_result"].sum(dim=2) + bias
    assert torch.allclose(total, cache["blocks.1.hook_attn_out"], atol=1e-6)
    assert cache["blocks.1.attn.hook_result"].shape == (3, 40, CFG.n_heads, CFG.d_model)
    assert not model.blocks[1].attn.per_head_result  # switched back off after the context


def test_hook_names_follow_transformer_lens(model):
    names = set(hook_points(model))
    expected = {
        "hook_embed",
        "hook_pos_embed",
        "ln_final.hook_scale",
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
        "blocks.0.hook_resid_post",
        "blocks.1.attn.hook_q",
        "blocks.1.attn.hook_k",
        "blocks.1.attn.hook_v",
        "blocks.1.attn.hook_attn_scores",
        "blocks.1.attn.hook_pattern",
        "blocks.1.attn.hook_z",
        "blocks.1.attn.hook_result",
        "blocks.1.mlp.hook_pre",
        "blocks.1.mlp.hook_post",
    }
    assert expected <= names


def test_cached_shapes_and_attention_rows_sum_to_one(model, tokens):
    _, cache = run_with_cache(model, tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (3, 4, 40, 40)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(3, 4, 40))
    assert cache["blocks.0.attn.hook_q"].shape == (3, 40, 4, 8)
    assert cache["ln_final.hook_scale"].shape == (3, 40, 1)


def test_a_hook_can_replace_an_activation_and_is_removed_even_after_an_error(model, tokens):
    with torch.no_grad():
        clean = model(tokens)
        with hooks(model, [("blocks.1.hook_mlp_out", lambda x, name: torch.zeros_like(x))]):
            ablated = model(tokens)
        assert not torch.equal(ablated, clean)
        with (
            pytest.raises(RuntimeError),
            hooks(model, [("blocks.0.hook_attn_out", lambda x, name: x * 0)]),
        ):
            raise RuntimeError("boom")
        assert torch.equal(model(tokens), clean)


def test_unknown_hook_name_suggests_the_close_one(model):
    with (
        pytest.raises(KeyError, match=r"did you mean `blocks\.1\.attn\.hook_pattern`"),
        hooks(model, [("blocks.1.attn.hook_patern", lambda x, n: None)]),
    ):
        pass


@pytest.mark.parametrize(
    "name", ["blocks.1.attn", "blocks.7.hook_resid_pre", "blocks..hook_resid_pre", "training", ""]
)
def test_a_name_that_is_not_a_hook_point_is_refused_whatever_it_names(model, name):
    """A module that is not a hook point, a block the model lacks, an attribute that is not a
    module: each is an unknown hook point, not an attached hook."""
    with pytest.raises(KeyError, match="no hook point"), hooks(model, [(name, lambda x, n: None)]):
        pass
    assert not any(point._forward_hooks for point in hook_points(model).values())


def test_per_head_results_are_switched_on_only_inside_the_block(model, tokens):
    with hooks(model, [("blocks.1.attn.hook_result", lambda x, n: None)]):
        assert model.blocks[1].attn.per_head_result and not model.blocks[0].attn.per_head_result
    assert not model.blocks[1].attn.per_head_result
