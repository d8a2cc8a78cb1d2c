"""Active learning: selection takes the most uncertain frames and keeps them diverse, exploration
stops a trajectory where the committee is unsure and restarts, and ``mlip learn`` runs its loop,
lowers the test error, and resumes from its files."""

import json

import numpy as np
import pytest
from ase.build import bulk

from mlip.learning.select import descriptor, select


def _cells():
    out = []
    for k, a in enumerate([3.6, 3.6, 3.61, 4.2, 3.0]):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.info["max_force_std"] = [0.9, 0.8, 0.85, 0.5, 0.01][k]
        out.append(atoms)
    return out


def test_selection_uncertain_then_diverse():
    cells = _cells()
    assert np.linalg.norm(descriptor(cells[0], [29]) - descriptor(cells[1], [29])) == 0
    chosen = select(cells, 3, min_std=0.05, species=[29])
    assert chosen[0] == 0  # the most uncertain first
    assert 4 not in chosen  # below min_std: not worth an oracle call
    assert 3 in chosen  # the different lattice constant beats near-duplicates of frame 0
    assert len(set(chosen) & {0, 1, 2}) == 2


@pytest.mark.slow
def test_exploration_stops_where_unsure_and_restarts(tmp_path):
    from mlip.learning.explore import run_trajectory
    from mlip.testing.systems import make_model
    from mlip.uncertainty.committee import CommitteePotential, export_committee

    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    members = []
    for seed in range(2):
        m = make_model("invariant", [29], calibrate_on=[cu])
        import torch

        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=p.dtype))
        members.append(m)
    export_committee(CommitteePotential(members), str(tmp_path / "c.pt"))
    strict = run_trajectory(cu, str(tmp_path / "c.pt"), 300, 20, 2, 1.0, threshold=0.0, seed=0, group="g")
    assert strict["trajectories"] == 10 and strict["stopped_by_uncertainty"] == 10  # every snapshot is "unsure"
    assert len(strict["candidates"]) == 10
    loose = run_trajectory(cu, str(tmp_path / "c.pt"), 300, 20, 2, 1.0, threshold=1e9, seed=0, group="g")
    assert loose["trajectories"] == 1 and len(loose["candidates"]) == 10
    assert all(c.info["max_force_std"] > 0 for c in loose["candidates"])


@pytest.mark.slow
def test_learn_loop_improves_and_resumes(tmp_path):
    from mlip.cli.main import main

    args = ["learn", "cu_emt", "iterations=2", "committee=2", 'train=["experiment=quick","model=invariant",'
            '"trainer.max_epochs=20"]', "explore.steps=40", "select.per_iteration=8", "test.steps=100",
            "--output", str(tmp_path / "al")]
    assert main(args) == 0
    rows = [json.loads((tmp_path / "al" / f"iter_{k}" / "metrics.json").read_text()) for k in range(2)]
    assert rows[1]["train_frames"] == rows[0]["train_frames"] + rows[0]["selected"] - 0
    assert rows[1]["oracle_calls_total"] > rows[0]["oracle_calls_total"]
    # the error of iteration k is that of a committee trained on the labels before iteration k's selection
    assert rows[1]["oracle_calls_trained_on"] == rows[0]["oracle_calls_total"]
    assert rows[0]["oracle_calls_trained_on"] == rows[0]["oracle_calls_total"] - rows[0]["oracle_calls_this_iteration"]
    assert (tmp_path / "al" / "learn_report.md").is_file() and (tmp_path / "al" / "learn_progress.png").is_file()
    member = tmp_path / "al" / "iter_1" / "committee" / "member_0" / "metrics.json"
    stamp = member.stat().st_mtime_ns
    assert main(args) == 0  # everything done: nothing is trained or labelled again
    assert member.stat().st_mtime_ns == stamp
