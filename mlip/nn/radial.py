"""Radial basis functions of the interatomic distance."""

import math
from typing import Any, List

import torch


class BesselBasis(torch.nn.Module):
    """b_n(r) = sqrt(2 / r_c) sin(n pi r / r_c) / r, n = 1..num_basis (DimeNet / NequIP).

    ``r`` [E] in Å; returns [E, num_basis] in 1/Å. Frequencies are trainable when ``trainable``.
    """
    frequencies: torch.Tensor

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / self.cutoff)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / self.cutoff
        if trainable:
            self.frequencies = torch.nn.Parameter(freqs)
        else:
            self.register_buffer("frequencies", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r) / r


def folded_weight_scales(net: torch.nn.Module) -> List[float]:
    """Per-layer constants that let a silu e3nn ``FullyConnectedNet`` run as
    ``x = silu(x @ (W_k * s_k))`` (no activation after the last layer), with the same parameters.

    e3nn scales each layer's input by 1/sqrt(fan_in) and multiplies each activation's output by
    the constant that gives it unit second moment, then by 1 (sqrt of the output variance): two
    elementwise passes per hidden layer over [E, hidden] in forward, and more in every backward.
    Both constants are linear, so they fold into the next layer's weight matrix (a few hundred
    numbers) instead: s_k = post_{k-1} / sqrt(fan_in_k var_in_k) with post_{-1} = 1."""
    scales: List[float] = []
    post = 1.0
    layers: List[Any] = list(net.children())
    for k, layer in enumerate(layers):
        act = layer.act
        if act is None:
            if k != len(layers) - 1:
                raise ValueError("folded_weight_scales: only the last layer may have no activation")
            scales.append(post / math.sqrt(layer.h_in * layer.var_in / layer.var_out))
        else:
            if k == len(layers) - 1:
                raise ValueError("folded_weight_scales: the last layer must be linear (out_act=False)")
            if getattr(act, "f", None) is not torch.nn.functional.silu:
                raise ValueError("folded_weight_scales: the hidden activation must be silu")
            scales.append(post / math.sqrt(layer.h_in * layer.var_in))
            post = (1.0 if act._is_id else float(act.cst)) * math.sqrt(layer.var_out)
    return scales
