"""The sparse autoencoder: SAELens's "standard" architecture, in its parameter names.

    f(x) = ReLU((x − b_dec) W_enc + b_enc)          [d_sae] feature activations
    x̂(f) = f W_dec + b_dec                           [d_in]  reconstruction
    ε(x) = x − x̂(f(x))                               the error term, its own node in paths

W_enc is [d_in, d_sae], W_dec [d_sae, d_in] (row i is feature i's decoded direction), as in
SAELens's `sae_weights.safetensors`. Training (runner.features.fit) keeps the decoder rows at
unit norm and penalises Σ_i f_i (the L1 of Bricken et al. 2023, "Towards Monosemanticity").
"""

from __future__ import annotations

import torch
from torch import nn


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in: int, d_sae: int) -> None:
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] the encoder's input to the ReLU."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] feature activations of activations x [..., d_in]."""
        return torch.relu(self.pre_activation(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """[..., d_in] the reconstruction from feature activations f [..., d_sae]."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encode(x)
        return self.decode(f), f

    def state(self) -> dict[str, torch.Tensor]:
        """The weights in SAELens's names, detached and contiguous."""
        return {
            name: getattr(self, name).detach().contiguous().clone()
            for name in ("W_enc", "b_enc", "W_dec", "b_dec")
        }
