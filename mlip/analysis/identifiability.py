"""Identifiability of fitted parameters: the Fisher information (Gauss-Newton matrix) of the loss.

For the residuals r of ``mlip.training.loss`` (energy per atom, force components, stress
components, labelled entries only) and parameters theta, with J_k = d r_k / d theta for kind k:

    G_k = J_k^T J_k                                   (accumulated over the data, float64)
    F   = sum_k G_k / (n_k sigma_k^2)                 ("loss" weights: 1/2 the Gauss-Newton
                                                       Hessian of the training loss)
    F_L = sum_k G_k / sigma_k^2                       ("likelihood" weights: the Fisher information
                                                       of independent Gaussian errors sigma_k)

n_k counts the labelled entries of kind k over all frames analysed. Eigenvalues and vectors of F
say which parameter combinations the data determine (stiff, large eigenvalue) and which barely
or not at all (sloppy, small or zero eigenvalue). Standard errors come from F_L: conditional
1/sqrt(F_L[i, i]) (the others held fixed), marginal sqrt((F_L^+)[i, i]) (the others fitted too),
both in the parameter's own units; they are the Cramer-Rao bounds if sigma_k are the noise levels.
With ``loss.huber_delta`` the squared-error (Gauss-Newton) form is still used: it is the Huber
loss's curvature for every residual below the threshold.

Parameters may be any named parameters or floating-point buffers of the energy model (E0, scale
and shift are buffers): they are substituted with ``torch.func.functional_call``. Forces are
gradients, so d forces / d theta needs the force graph (``create_graph=True``). Each batch's
Jacobian is taken by whichever needs fewer backward passes: one vector-Jacobian product per
residual (rows), or one pass per parameter of the double-VJP trick (columns); it is accumulated
into the P x P matrices batch by batch, so memory is O(P^2 + rows of a batch x P).
"""

import copy
import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.func import functional_call

from mlip import keys
from mlip.errors import ConfigError
from mlip.fileio import save_figure
from mlip.models import contract
from mlip.training.loss import residuals

#: eigenvalues below RTOL x largest count as zero (see ``analyse``)
DEFAULT_RTOL = 1e-12


# ---------------------------------------------------------------------------- parameters
def candidate_tensors(energy_model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Named parameters and floating-point buffers of the energy model (names as in its
    ``state_dict``), the tensors an analysis may treat as parameters."""
    out: Dict[str, torch.Tensor] = dict(energy_model.named_parameters())
    for name, buf in energy_model.named_buffers():
        if buf.is_floating_point():
            out[name] = buf
    return out


def select_parameters(energy_model: torch.nn.Module, patterns: Optional[Sequence[str]] = None) -> List[str]:
    """Names of the tensors to analyse.

    ``patterns``: glob patterns (``fnmatch``) over the names of parameters and floating-point
    buffers, e.g. ``energies.*`` or ``readout.nets.*.2.*``; a name matched by any is taken.
    Without patterns: the model's ``identifiability_parameters()`` hook, else every trainable
    parameter. Order: by pattern, then the model's order (parameters, then buffers).
    """
    available = candidate_tensors(energy_model)
    if patterns:
        chosen: List[str] = []
        for pattern in patterns:
            chosen += [n for n in available if fnmatch.fnmatchcase(n, pattern) and n not in chosen]
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in available)]
        if unmatched:
            raise ConfigError(f"--params {' '.join(unmatched)}: matches no parameter or buffer; "
                              f"names are: {', '.join(available)}")
        return chosen
    names = contract.identifiability_parameters(energy_model)
    if names is not None:
        missing = [n for n in names if n not in available]
        if missing:
            raise ConfigError(f"identifiability_parameters() of {type(energy_model).__name__} names "
                              f"{missing}, not parameters or floating-point buffers of the model")
        return names
    return [n for n, p in energy_model.named_parameters() if p.requires_grad]


def _entry_labels(energy_model: torch.nn.Module, name: str, tensor: torch.Tensor) -> List[str]:
    """One label per scalar entry: ``name`` for a scalar; the first index named after the element
    for per-species tensors (``energies.e0[Si]``, EAM ``density_values[Si,3]``) and after the pair
    for per-pair tensors of a model with ``pair_names`` (``epsilon[Si-Ge]``); else ``name[i,j]``."""
    if tensor.dim() == 0:
        return [name]
    first: Optional[List[str]] = None
    species = contract.species_of(energy_model)
    pair_names = contract.pair_names(energy_model)
    leaf = name.split(".")[-1]
    per_species = leaf == "e0" or leaf.startswith(("density", "embedding"))
    if per_species and tensor.shape[0] == len(species):
        from ase.data import chemical_symbols
        first = [chemical_symbols[z] for z in species]
    elif pair_names and "." not in name and tensor.shape[0] == len(pair_names):
        first = [str(p) for p in pair_names]
    labels = []
    for idx in np.ndindex(*tensor.shape):
        head = first[idx[0]] if first is not None else str(idx[0])
        labels.append(f"{name}[{','.join([head] + [str(i) for i in idx[1:]])}]")
    return labels


# ---------------------------------------------------------------------------- Fisher matrix
@dataclass
class FisherInformation:
    """Per-kind Gauss-Newton blocks of a set of parameters, and what they were computed from.

    ``names`` [P] label every scalar entry; ``values`` [P] their fitted values; ``blocks[kind]``
    [P, P] = J_k^T J_k (unweighted); ``counts[kind]`` = n_k; ``sigma[kind]`` in eV/atom, eV/Å,
    eV/Å³; ``tensors`` the analysed tensor names.
    """

    names: List[str]
    values: np.ndarray
    blocks: Dict[str, np.ndarray]
    counts: Dict[str, int]
    sigma: Dict[str, float]
    n_frames: int
    tensors: List[str] = field(default_factory=list)

    def matrix(self, weights: str = "loss", kinds: Optional[Sequence[str]] = None) -> np.ndarray:
        """F = sum_k G_k w_k over ``kinds`` (default: all analysed), w_k = 1/(n_k sigma_k^2) for
        ``weights="loss"`` or 1/sigma_k^2 for ``"likelihood"``."""
        if weights not in ("loss", "likelihood"):
            raise ValueError(f"weights={weights!r}: use 'loss' or 'likelihood'")
        kinds = list(self.blocks) if kinds is None else list(kinds)
        out = np.zeros((len(self.names), len(self.names)))
        for kind in kinds:
            if kind not in self.blocks:
                raise KeyError(f"kind {kind!r} not analysed (have {list(self.blocks)})")
            n = self.counts[kind]
            if n == 0:
                continue
            w = 1.0 / self.sigma[kind] ** 2
            if weights == "loss":
                w /= n
            out += w * self.blocks[kind]
        return out


def _loss_sigmas(loss_fn: Any) -> Dict[str, float]:
    """Sigma of each kind of a ``WeightedLoss``: the learned value where the loss learns it."""
    sigma = {k: float(v) for k, v in dict(loss_fn.sigma).items()}
    learned = getattr(loss_fn, "log_sigma", None)
    if learned is not None:
        for kind, log_sigma in learned.items():
            sigma[kind] = float(torch.exp(log_sigma.detach().double()))
    return sigma


def loss_sigmas(loss: Any) -> Dict[str, float]:
    """``{kind: sigma}`` from a ``WeightedLoss`` (learned sigmas included) or a plain mapping
    (None entries dropped)."""
    if isinstance(loss, dict):
        return {k: float(v) for k, v in loss.items() if v is not None}
    return _loss_sigmas(loss)


def _flat_grads(grads: Sequence[Optional[torch.Tensor]], sizes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.reshape(-1) if g is not None else like.new_zeros(s) for g, s in zip(grads, sizes)])


def _jacobian_rows(r: torch.Tensor, params: List[torch.Tensor]) -> torch.Tensor:
    """J [m, P] of the flat residuals ``r`` [m] by one vector-Jacobian product per residual
    (cheaper than columns when m < P). A plain loop: ``is_grads_batched`` (vmap) is slower here."""
    sizes = [p.numel() for p in params]
    rows = []
    for k in range(r.numel()):
        grads = torch.autograd.grad(r[k], params, retain_graph=True, allow_unused=True)
        rows.append(_flat_grads(grads, sizes, r))
    return torch.stack(rows) if rows else r.new_zeros(0, sum(sizes))


def _jacobian_columns(r: torch.Tensor, params: List[torch.Tensor]) -> torch.Tensor:
    """J [m, P] one column per pass (cheaper than rows when P < m), by the double-VJP trick:
    g(u) = J^T u is linear in a dummy u [m], so d g_j / d u = J[:, j]."""
    sizes = [p.numel() for p in params]
    u = torch.zeros_like(r, requires_grad=True)
    grads = torch.autograd.grad(r, params, grad_outputs=u, create_graph=True, allow_unused=True)
    g = _flat_grads(grads, sizes, r)
    columns = []
    for j in range(g.numel()):
        if not g.requires_grad:
            columns.append(r.new_zeros(r.numel()))
            continue
        (col,) = torch.autograd.grad(g[j], u, retain_graph=True, allow_unused=True)
        columns.append(col if col is not None else r.new_zeros(r.numel()))
    return torch.stack(columns, dim=1) if columns else r.new_zeros(r.numel(), 0)


def jacobian(r: torch.Tensor, params: List[torch.Tensor], mode: str = "auto") -> torch.Tensor:
    """J [m, P] = d r / d params (flattened, concatenated): by ``rows`` (m VJPs), ``columns``
    (P passes of the double-VJP trick), or ``auto`` (the fewer passes)."""
    if mode == "auto":
        mode = "columns" if sum(p.numel() for p in params) < r.numel() else "rows"
    if mode == "rows":
        return _jacobian_rows(r, params)
    if mode == "columns":
        return _jacobian_columns(r, params)
    raise ValueError(f"mode={mode!r}: use auto, rows or columns")


def fisher_information(model: torch.nn.Module, batches: Iterable[Dict[str, torch.Tensor]],
                       sigma: Any, parameters: Optional[Sequence[str]] = None,
                       kinds: Optional[Sequence[str]] = None, mode: str = "auto") -> FisherInformation:
    """Accumulate the per-kind blocks G_k = J_k^T J_k over ``batches`` at the model's parameters.

    ``model``: a ``ForcesAndStress`` wrapper (``mlip.physics``) around an energy model; it is
    evaluated in float64 on a copy of the selected tensors (the model itself is not changed).
    ``batches``: collated batches with labels and masks. ``sigma``: a ``WeightedLoss`` (its kinds
    and sigmas, learned ones included) or ``{kind: sigma}``. ``parameters``: tensor names of the
    energy model (see ``select_parameters``, whose default is used when None); entries may be
    glob patterns. ``kinds``: restrict to these kinds of the loss. ``mode``: how Jacobians are
    taken (see ``jacobian``); all kinds of a batch are differentiated together.
    """
    energy_model = contract.energy_model_of(model)
    sigmas = loss_sigmas(sigma)
    if kinds is not None:
        unknown = [k for k in kinds if k not in sigmas]
        if unknown:
            raise ConfigError(f"kinds {unknown} are not in the loss (it has {list(sigmas)})")
        sigmas = {k: sigmas[k] for k in kinds}
    names = select_parameters(energy_model, parameters)
    available = candidate_tensors(energy_model)
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(f"parameters {missing} are not parameters or floating-point buffers of the model")
    if not names:
        raise ConfigError("no parameters selected for the identifiability analysis")

    model = copy.deepcopy(model).double()
    energy_model = contract.energy_model_of(model)
    available = candidate_tensors(energy_model)
    device = next(iter(available.values())).device
    leaves = {n: available[n].detach().to(torch.float64).clone().requires_grad_(True) for n in names}
    labels = [lab for n in names for lab in _entry_labels(energy_model, n, leaves[n])]
    values = torch.cat([leaves[n].detach().reshape(-1) for n in names]).cpu().numpy()
    substitute = {"energy_model." + n: t for n, t in leaves.items()}
    plist = [leaves[n] for n in names]
    n_params = len(labels)
    blocks = {k: torch.zeros(n_params, n_params, dtype=torch.float64, device=device) for k in sigmas}
    counts = {k: 0 for k in sigmas}
    n_frames = 0
    for batch in batches:
        batch = {k: (v.to(device=device, dtype=torch.float64) if v.is_floating_point() else v.to(device))
                 for k, v in batch.items()}
        n_frames += int(batch[keys.N_ATOMS].shape[0])
        need_forces = keys.FORCES in sigmas and bool(batch[keys.FORCES_MASK].any())
        need_stress = keys.STRESS in sigmas and bool(batch[keys.STRESS_MASK].any())
        need_grad = need_forces or need_stress
        out = functional_call(model, substitute, (batch,), dict(
            compute_forces=need_grad, compute_stress=need_stress, create_graph=need_grad))
        parts: List[Tuple[str, torch.Tensor]] = []
        for kind in sigmas:
            if kind == keys.FORCES and not need_forces or kind == keys.STRESS and not need_stress:
                continue
            r = residuals(out, batch, kind)
            if r.numel() > 0:
                parts.append((kind, r))
        if not parts:
            continue
        jac = jacobian(torch.cat([r for _, r in parts]), plist, mode)
        start = 0
        for kind, r in parts:
            block = jac[start:start + r.numel()]
            start += r.numel()
            blocks[kind] += block.T @ block
            counts[kind] += int(r.numel())
    return FisherInformation(labels, values, {k: v.cpu().numpy() for k, v in blocks.items()}, counts,
                             sigmas, n_frames, list(names))


# ---------------------------------------------------------------------------- analysis
def _combination(vector: np.ndarray, names: Sequence[str], n_components: int) -> List[Tuple[str, float]]:
    """Largest components of an eigenvector, sign fixed so that the largest is positive."""
    v = vector * (1.0 if vector[np.argmax(np.abs(vector))] >= 0 else -1.0)
    order = np.argsort(-np.abs(v))[:n_components]
    return [(names[i], float(v[i])) for i in order]


def format_combination(components: Sequence[Tuple[str, float]]) -> str:
    return " ".join(f"{c:+.3f} {n}" for n, c in components)


def analyse(info: FisherInformation, rtol: float = DEFAULT_RTOL, n_vectors: int = 3, n_components: int = 4,
            kinds: Optional[Sequence[str]] = None, relative: bool = False) -> Dict[str, Any]:
    """Eigen-analysis of F (loss weights) and standard errors from F_L (likelihood weights).

    ``rtol``: eigenvalues (and diagonal entries) <= rtol x largest eigenvalue count as zero.
    ``relative``: analyse log-parameters (F_ij theta_i theta_j), which makes the spectrum
    independent of units; parameters at zero then carry no information by construction.
    Returns a JSON-ready dict (see the keys below); eigenvalues sorted from largest.
    """
    fisher = info.matrix("loss", kinds)
    fisher_l = info.matrix("likelihood", kinds)
    if relative:
        d = np.abs(info.values)
        fisher = fisher * np.outer(d, d)
        fisher_l = fisher_l * np.outer(d, d)
    fisher = 0.5 * (fisher + fisher.T)
    fisher_l = 0.5 * (fisher_l + fisher_l.T)
    lam, vec = np.linalg.eigh(fisher)
    order = np.argsort(lam)[::-1]
    lam, vec = lam[order], vec[:, order]
    top = float(max(lam[0], 0.0)) if lam.size else 0.0
    tol = rtol * top
    zero = lam <= tol if top > 0 else np.ones_like(lam, dtype=bool)
    nonzero = lam[~zero]
    condition = float(nonzero[0] / nonzero[-1]) if nonzero.size else math.inf
    n = len(info.names)
    k = min(n_vectors, n)

    def vectors(indices):
        return [{"index": int(i), "eigenvalue": float(lam[i]), "zero": bool(zero[i]),
                 "components": _combination(vec[:, i], info.names, n_components)} for i in indices]

    diag = np.diag(fisher)
    uninformative = [info.names[i] for i in range(n) if diag[i] <= tol or top == 0]

    # standard errors (likelihood weights); marginal is infinite along a null direction
    lam_l, vec_l = np.linalg.eigh(fisher_l)
    top_l = float(max(lam_l.max(), 0.0)) if lam_l.size else 0.0
    keep = lam_l > rtol * top_l if top_l > 0 else np.zeros_like(lam_l, dtype=bool)
    cov = (vec_l[:, keep] / lam_l[keep]) @ vec_l[:, keep].T
    in_null = (vec_l[:, ~keep] ** 2).sum(axis=1) > 1e-8
    diag_l = np.diag(fisher_l)
    conditional = np.where(diag_l > rtol * top_l, 1.0 / np.sqrt(np.maximum(diag_l, 1e-300)), np.inf)
    marginal = np.where(in_null, np.inf, np.sqrt(np.maximum(np.diag(cov), 0.0)))
    unit = "relative (d ln theta)" if relative else "parameter units"
    return {
        "n_parameters": n,
        "n_frames": info.n_frames,
        "tensors": info.tensors,
        "kinds": {kind: {"sigma": info.sigma[kind], "n_entries": info.counts[kind]}
                  for kind in (kinds or info.blocks)},
        "weights": "F = sum_k J_k^T J_k / (n_k sigma_k^2) (loss weights)",
        "relative": relative,
        "rtol": rtol,
        "zero_tolerance": tol,
        "eigenvalues": [float(x) for x in lam],
        "n_zero": int(zero.sum()),
        "largest_eigenvalue": top,
        "smallest_nonzero_eigenvalue": float(nonzero[-1]) if nonzero.size else None,
        "condition_number": condition,
        "stiffest": vectors(range(k)),
        "sloppiest": vectors(range(n - 1, n - 1 - k, -1)),
        "uninformative": uninformative,
        "parameters": [{"name": info.names[i], "value": float(info.values[i]), "fisher_diagonal": float(diag[i]),
                        "conditional_se": float(conditional[i]), "marginal_se": float(marginal[i])}
                       for i in range(n)],
        "standard_errors": f"from sum_k J_k^T J_k / sigma_k^2 (likelihood weights), in {unit}",
    }


def format_report(report: Dict[str, Any], max_rows: int = 30) -> str:
    """The printed table of ``analyse``'s result."""
    lines = [f"Fisher information of {report['n_parameters']} parameters ({', '.join(report['tensors'])}) "
             f"over {report['n_frames']} frames" + (", log-parameters" if report["relative"] else "")]
    units = {"energy": "eV/atom", "forces": "eV/Å", "stress": "eV/Å³"}
    for kind, v in report["kinds"].items():
        lines.append(f"  {kind:8s} {v['n_entries']:8d} entries, sigma {v['sigma']:.4g} {units.get(kind, '')}")
    small = report["smallest_nonzero_eigenvalue"]
    lines.append(f"  eigenvalues: largest {report['largest_eigenvalue']:.4g}, smallest non-zero "
                 f"{small:.4g}" if small is not None else "  eigenvalues: all zero")
    lines.append(f"  condition number (largest / smallest non-zero): {report['condition_number']:.4g}")
    lines.append(f"  numerically zero eigenvalues: {report['n_zero']} of {report['n_parameters']} "
                 f"(<= {report['rtol']:.0e} x largest = {report['zero_tolerance']:.3g})")
    for title, key in (("stiffest combinations", "stiffest"), ("sloppiest combinations", "sloppiest")):
        lines.append(f"  {title}:")
        for v in report[key]:
            flag = " (zero)" if v["zero"] else ""
            lines.append(f"    #{v['index']:<4d} {v['eigenvalue']:11.4g}{flag:7s} "
                         f"{format_combination(v['components'])}")
    if report["uninformative"]:
        shown = report["uninformative"][:max_rows]
        more = len(report["uninformative"]) - len(shown)
        lines.append("  parameters with no information: " + ", ".join(shown) + (f" (+{more} more)" if more else ""))
    else:
        lines.append("  parameters with no information: none")
    rows = report["parameters"]
    lines.append(f"  standard errors ({report['standard_errors']}):")
    width = max(12, max(len(r["name"]) for r in rows[:max_rows]))
    lines.append(f"    {'parameter':{width}s} {'value':>12s} {'conditional':>12s} {'marginal':>12s}")
    for r in rows[:max_rows]:
        lines.append(f"    {r['name']:{width}s} {r['value']:12.5g} {r['conditional_se']:12.4g} "
                     f"{r['marginal_se']:12.4g}")
    if len(rows) > max_rows:
        lines.append(f"    ... {len(rows) - max_rows} more in identifiability.json")
    return "\n".join(lines)


def spectrum_plot(report: Dict[str, Any], path: str, title: str = "Fisher information spectrum") -> None:
    """Eigenvalues on a log axis, one tick per eigenvalue (largest first); numerically zero ones
    drawn at the tolerance floor as red crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = np.asarray(report["eigenvalues"], dtype=float)
    top = report["largest_eigenvalue"]
    floor = report["zero_tolerance"] if report["zero_tolerance"] > 0 else 1e-300
    zero = lam <= report["zero_tolerance"]
    fig, ax = plt.subplots(figsize=(3.2, 4.5), dpi=120)
    for x in lam[~zero]:
        ax.axhline(x, xmin=0.25, xmax=0.75, color="C0", lw=1)
    if zero.any():
        ax.scatter(np.linspace(0.3, 0.7, int(zero.sum())) if zero.sum() > 1 else [0.5], np.full(zero.sum(), floor),
                   marker="x", color="C3", zorder=3,
                   label=f"{int(zero.sum())} numerically zero\n(<= {report['rtol']:.0e} x largest)")
        ax.axhline(floor, color="C3", ls=":", lw=0.8)
        ax.legend(loc="lower center", fontsize=7, bbox_to_anchor=(0.5, -0.25))
    ax.set_yscale("log")
    lo = floor if zero.any() else lam[~zero].min() if (~zero).any() else 1e-12
    hi = top if top > 0 else 1.0
    ax.set_ylim(lo / 10, hi * 10)
    ax.set_xlim(0, 1)
    ax.set_xticks([])
    cond = report["condition_number"]
    ax.set_title(f"{title}\n{report['n_parameters']} parameters, condition {cond:.3g}", fontsize=8)
    ax.set_ylabel("eigenvalue of F (loss weights)")
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
