"""Cross-validation summary of a Hydra multirun (``mlip cv <sweep dir>``).

Each job directory holds ``metrics.json`` (written by ``train.py``), ``.hydra/overrides.yaml``
(Hydra) and ``config.yaml``. Jobs are grouped by their overrides without ``split.fold`` (so the
folds of one setting form a group; without ``overrides.yaml`` by the config values that differ
between jobs). For every numeric metric of the sections ``cv`` (the held-out fold of
``split=kfold``), ``val``, ``test`` and ``learned_sigma``, each group gets the mean and the sample
standard deviation (ddof = 1; null for a single job) over its jobs. Units are those of
``metrics.json``: meV/atom, meV/Å, GPa; learned sigma in eV/atom, eV/Å, eV/Å³.

When groups differ in ``regularization.alpha``, the best alpha is the one of the group with the
lowest mean of the chosen metric (default ``cv/forces_mae``, else ``val/forces_mae``).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, cast

from mlip.fileio import save_figure, write_json

SECTIONS = ("cv", "val", "test", "learned_sigma")
FOLD_KEY = "split.fold"
ALPHA_KEY = "regularization.alpha"


@dataclass
class Job:
    path: Path
    overrides: Optional[List[str]]  # Hydra overrides, None when the job has no .hydra/overrides.yaml
    config: Dict[str, Any]  # flattened config.yaml (dotted keys)
    metrics: Dict[str, float]  # "<section>/<metric>" -> value

    @property
    def fold(self) -> Optional[int]:
        value = self.config.get(FOLD_KEY)
        return None if value is None else int(value)

    @property
    def alpha(self) -> Optional[float]:
        if self.config.get("regularization.name", "none") == "none":
            return 0.0 if "regularization.name" in self.config else None
        value = self.config.get(ALPHA_KEY)
        return None if value is None else float(value)


@dataclass
class Group:
    label: str  # the overrides shared by the group's jobs (without split.fold)
    jobs: List[Job]
    stats: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)  # metric -> mean, std, n

    @property
    def alpha(self) -> Optional[float]:
        return self.jobs[0].alpha

    def mean(self, metric: str) -> float:
        """The mean of ``metric`` over the group's folds (set for every metric in ``stats``)."""
        value = self.stats[metric]["mean"]
        assert value is not None
        return value

    @property
    def label_without_alpha(self) -> str:
        return " ".join(o for o in self.label.split() if not o.startswith(ALPHA_KEY + "=")) or "(defaults)"


def _flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict):
        out: Dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _numbers(metrics: Dict[str, Any]) -> Dict[str, float]:
    out = {}
    for section in SECTIONS:
        for name, value in (metrics.get(section) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{section}/{name}"] = float(value)
    return out


def load_jobs(sweep_dir: str) -> List[Job]:
    """Every job below ``sweep_dir`` that wrote ``metrics.json``, sorted by path."""
    from omegaconf import OmegaConf

    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: not a directory")
    jobs = []
    for metrics_path in sorted(root.rglob("metrics.json")):
        job_dir = metrics_path.parent
        overrides_path = job_dir / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in cast(List[Any], OmegaConf.to_container(OmegaConf.load(overrides_path)))] \
            if overrides_path.exists() else None
        config_path = job_dir / "config.yaml"
        if not config_path.exists():
            config_path = job_dir / ".hydra" / "config.yaml"
        config = _flatten(OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)) \
            if config_path.exists() else {}
        with open(metrics_path) as fh:
            metrics = _numbers(json.load(fh))
        jobs.append(Job(job_dir, overrides, config, metrics))
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no job directory with metrics.json below it")
    return jobs


def _labels(jobs: List[Job]) -> List[str]:
    """Group label of each job: its overrides without split.fold and hydra.*; for jobs without
    overrides.yaml, the config values that differ between jobs (again without split.fold)."""
    labels = []
    varying = sorted(k for k in set().union(*(j.config for j in jobs))
                     if k != FOLD_KEY and len({repr(j.config.get(k)) for j in jobs}) > 1)
    for job in jobs:
        if job.overrides is not None:
            kept = sorted(o for o in job.overrides
                          if o.split("=", 1)[0].lstrip("+~") != FOLD_KEY and not o.startswith("hydra."))
        else:
            kept = [f"{k}={job.config.get(k)}" for k in varying]
        labels.append(" ".join(kept))
    return labels


def mean_std(values: List[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (ddof = 1; None for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarise(jobs: List[Job]) -> List[Group]:
    """Group the jobs and compute mean and std of every metric per group (groups in first-seen order)."""
    groups: Dict[str, Group] = {}
    for job, label in zip(jobs, _labels(jobs)):
        groups.setdefault(label, Group(label, [])).jobs.append(job)
    for group in groups.values():
        names = sorted(set().union(*(j.metrics for j in group.jobs)), key=_metric_order)
        for name in names:
            values = [j.metrics[name] for j in group.jobs if name in j.metrics]
            mean, std = mean_std(values)
            group.stats[name] = {"mean": mean, "std": std, "n": len(values)}
    return list(groups.values())


def default_metric(groups: List[Group]) -> str:
    return "cv/forces_mae" if any("cv/forces_mae" in g.stats for g in groups) else "val/forces_mae"


def resolve_metric(groups: List[Group], metric: Optional[str]) -> str:
    """``metric`` as ``<section>/<name>``; a bare name takes the default section (cv, else val)."""
    if metric is None:
        return default_metric(groups)
    if "/" not in metric or metric.split("/", 1)[0] not in SECTIONS:
        metric = default_metric(groups).split("/", 1)[0] + "/" + metric
    if not any(metric in g.stats for g in groups):
        known = sorted(set().union(*(g.stats for g in groups)))
        raise KeyError(f"--metric {metric}: no job has it; known metrics: {', '.join(known)}")
    return metric


def best_alpha(groups: List[Group], metric: str) -> Optional[Dict[str, Any]]:
    """The group with the lowest mean ``metric`` when the groups differ in alpha, else None."""
    candidates = [g for g in groups if metric in g.stats and g.alpha is not None]
    if len({g.alpha for g in candidates}) < 2:
        return None
    best = min(candidates, key=lambda g: g.mean(metric))
    return {"metric": metric, "alpha": best.alpha, "group": best.label, **best.stats[metric]}


def _metric_order(name: str) -> Tuple[int, int, str]:
    """Sections in SECTIONS order; within one, overall metrics before per-config-type ones."""
    section, rest = name.split("/", 1)
    return SECTIONS.index(section) if section in SECTIONS else len(SECTIONS), rest.count("/"), rest


def common_overrides(groups: List[Group]) -> List[str]:
    """Overrides shared by every group (printed once above the table)."""
    sets = [set(g.label.split()) for g in groups]
    return sorted(set.intersection(*sets)) if len(groups) > 1 else []


def format_table(groups: List[Group]) -> str:
    """One block per group: metric, mean, std, number of jobs. Overrides that all groups share
    are printed once at the top; each block is headed by the overrides that set it apart."""
    common = common_overrides(groups)
    lines = [f"common overrides: {' '.join(common)}"] if common else []
    for g in groups:
        folds = sorted(j.fold for j in g.jobs if j.fold is not None)
        own = " ".join(o for o in g.label.split() if o not in common) or "(defaults)"
        lines.append(f"== {own}: {len(g.jobs)} job(s)" + (f", folds {folds}" if folds else ""))
        width = max([len(n) for n in g.stats] + [6])
        lines.append(f"  {'metric':<{width}}  {'mean':>12}  {'std':>12}  {'n':>3}")
        for name, s in g.stats.items():
            std = "-" if s["std"] is None else f"{s['std']:.4g}"
            lines.append(f"  {name:<{width}}  {s['mean']:>12.4g}  {std:>12}  {s['n']:>3}")
    return "\n".join(lines)


def warnings_for(groups: List[Group]) -> List[str]:
    """Groups whose folds are incomplete or repeated (a job that failed or ran twice)."""
    out = []
    for g in groups:
        folds = [j.fold for j in g.jobs if j.fold is not None]
        k = g.jobs[0].config.get("split.k")
        if folds and (len(set(folds)) != len(folds) or (k is not None and len(folds) != int(k))):
            out.append(f"group {g.label or '(defaults)'!r}: folds {sorted(folds)} of split.k={k}")
    return out


def cv_curve(groups: List[Group], metric: str, path: str) -> bool:
    """Plot mean ± std of ``metric`` against alpha (log x), one line per setting other than alpha.
    Groups with alpha = 0 (no regularisation) are drawn as horizontal dashed lines. Returns False
    (and writes nothing) when fewer than two positive alphas have the metric."""
    positive = [g for g in groups if g.alpha and metric in g.stats]
    if len({g.alpha for g in positive}) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    common = set(common_overrides(groups))

    def own(g: Group) -> str:
        return " ".join(o for o in g.label_without_alpha.split() if o not in common) or "folds"

    lines: Dict[str, List[Group]] = {}
    for g in positive:
        lines.setdefault(own(g), []).append(g)
    for label, members in lines.items():
        members.sort(key=lambda g: float(g.alpha or 0.0))  # positive alphas
        x = [float(g.alpha or 0.0) for g in members]
        y = [g.mean(metric) for g in members]
        e = [g.stats[metric]["std"] or 0.0 for g in members]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=label)
    for g in groups:
        if g.alpha == 0.0 and metric in g.stats:
            ax.axhline(g.mean(metric), ls="--", lw=0.8, color="grey", label=f"alpha = 0: {own(g)}")
    ax.set_xscale("log")
    best = best_alpha(groups, metric)  # not None: two or more positive alphas have the metric
    assert best is not None
    ax.set_title(f"best alpha {best['alpha']:g}", fontsize=9)
    ax.set_xlabel("regularization.alpha")
    ax.set_ylabel(f"{metric} (mean ± std over folds)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return True


def write_summary(groups: List[Group], metric: str, path: str) -> Dict[str, Any]:
    summary = {
        "metric": metric,
        "best": best_alpha(groups, metric),
        "groups": [{"label": g.label, "alpha": g.alpha, "jobs": [str(j.path) for j in g.jobs],
                    "folds": [j.fold for j in g.jobs], "metrics": g.stats} for g in groups],
    }
    write_json(path, summary)
    return summary
