"""The on-disk dataset (``mlip preprocess``): records equal the frames read from the file, one-pass
statistics equal the in-memory ones, splits and graphs equal those of the extxyz, errors name file
and frame as loading does, a killed preprocessing resumes, new files append."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from mlip.data.io import LabelKeys, read_frames
from mlip.data.reference import e0_least_squares
from mlip.data.statistics import dataset_statistics
from mlip.data.store import FrameStore, preprocess, read_manifest
from mlip.data.store import writer as store_writer
from mlip.errors import ConfigError, DataError
from mlip.nn.neighbors import vesin_neighbor_list
from mlip.training.datamodule import FrameDataModule

ETHANOL = "rmd17_ethanol"


def cuag_frames(n=24, seed=0):
    """Cu-Ag fcc cells of varying composition, strain and rattle, labelled by EMT, with a group key."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 1))
        swap = rng.random(len(atoms)) < rng.uniform(0.1, 0.9)
        atoms.numbers[swap] = 47
        atoms.set_cell(atoms.cell * rng.uniform(0.97, 1.05), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.info["config_type"] = ["bulk", "strained", "rattled"][k % 3]
        atoms.info["traj"] = f"t{k // 4}"
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def cuag_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cuag") / "cuag.extxyz"
    write(path, cuag_frames())
    return path


def _store(tmp_path, inputs, name="ds", **kw):
    kw.setdefault("cutoff", 4.0)
    kw.setdefault("progress", False)
    preprocess([str(p) for p in inputs], str(tmp_path / name), **kw)
    return FrameStore(str(tmp_path / name))


def _expected_statistics(frames, cutoff):
    """The whole-set statistics computed in memory, the way training computes them."""
    species = sorted({z for f in frames for z in f.composition})
    e0 = e0_least_squares(frames, species, underdetermined="off")
    edges = sum(vesin_neighbor_list(f.positions, f.cell, f.pbc, cutoff)[0].shape[1] for f in frames)
    return e0, dataset_statistics(frames, edges, e0)


@pytest.mark.parametrize("workers", [1, 2])
def test_records_and_one_pass_statistics_equal_in_memory(tmp_path, cuag_file, workers):
    store = _store(tmp_path, [cuag_file], workers=workers, chunk_frames=5)
    frames = read_frames(str(cuag_file))
    assert len(store) == len(frames) == 24
    for summary, frame in zip(store.summaries, frames):
        got = store.frame(summary)
        assert summary.index == frame.index and summary.composition == frame.composition
        assert summary.info == frame.info and summary.config_type == frame.config_type
        np.testing.assert_array_equal(got.positions, frame.positions)
        np.testing.assert_array_equal(got.numbers, frame.numbers)
        np.testing.assert_array_equal(got.cell, frame.cell)
        assert got.labels.keys() == frame.labels.keys()
        for kind in frame.labels:
            np.testing.assert_array_equal(got.labels[kind], frame.labels[kind])
    stats = store.statistics
    e0, expected = _expected_statistics(frames, 4.0)
    assert stats["e0_rank"] == 2
    assert stats["e0_least_squares"]["Cu"] == pytest.approx(e0[29], abs=1e-9)
    assert stats["e0_least_squares"]["Ag"] == pytest.approx(e0[47], abs=1e-9)
    assert stats["force_rms"] == pytest.approx(expected["force_rms"], rel=1e-12)
    assert stats["avg_num_neighbors"] == pytest.approx(expected["avg_num_neighbors"], rel=1e-12)
    assert stats["energy_per_atom_mean"] == pytest.approx(expected["energy_shift"], abs=1e-9)
    assert stats["energy_per_atom_std"] == pytest.approx(expected["energy_std"], rel=1e-6)
    assert stats["elements"] == {"Cu": sum(f.composition.get(29, 0) for f in frames),
                                 "Ag": sum(f.composition.get(47, 0) for f in frames)}


def test_shipped_si_and_ethanol_statistics(tmp_path, shipped_train, shared_data):
    si = _store(tmp_path, [shipped_train], "si", cutoff=5.0, workers=2)
    frames = read_frames(shipped_train)
    e0, expected = _expected_statistics(frames, 5.0)
    assert si.statistics["e0_least_squares"]["Si"] == pytest.approx(e0[14], abs=1e-9)
    assert si.statistics["avg_num_neighbors"] == pytest.approx(expected["avg_num_neighbors"], rel=1e-12)
    assert si.statistics["force_rms"] == pytest.approx(expected["force_rms"], rel=1e-12)
    assert si.statistics["energy_per_atom_std"] == pytest.approx(expected["energy_std"], rel=1e-6)
    eth = shared_data / ETHANOL
    mol = _store(tmp_path, [eth / "train.xyz", eth / "isolated_atoms.xyz"], "eth", cutoff=5.0)
    assert mol.statistics["n_frames"] == 1000  # isolated atoms counted apart, for E0
    oxygen = [f for f in read_frames(str(eth / "isolated_atoms.xyz")) if f.composition == {8: 1}]
    assert mol.statistics["isolated_atom_energies"]["O"] == pytest.approx(oxygen[0].energy)
    assert mol.statistics["e0_rank"] == 1  # one composition: LS E0 not determined, and said so


@pytest.mark.parametrize("split", ["random", "kfold"])
def test_datamodule_on_store_equals_extxyz(tmp_path, cuag_file, split):
    """Same splits, E0, statistics and graphs from the file and from its preprocessed directory."""
    store_dir = tmp_path / "ds"
    preprocess([str(cuag_file)], str(store_dir), cutoff=4.0, chunk_frames=7, progress=False)
    kw = dict(cutoff=4.0, seed=3, group_by="traj")
    if split == "kfold":
        kw.update(split="kfold", k=3, fold=1)
    mem = FrameDataModule(train=str(cuag_file), **kw)
    disk = FrameDataModule(train=str(store_dir), **kw)
    mem.prepare()
    disk.prepare()
    strip = lambda d: {k: v for k, v in d.items() if k != "train_file"}  # noqa: E731
    assert strip(disk.split_indices) == strip(mem.split_indices)
    assert disk.e0 == pytest.approx(mem.e0, abs=1e-10)
    for key, value in mem.statistics.items():
        assert disk.statistics[key] == pytest.approx(value, rel=1e-10, abs=1e-12)
    assert disk.label_counts == mem.label_counts and disk.config_types == mem.config_types
    for name in mem.datasets:
        assert len(disk.datasets[name]) == len(mem.datasets[name])
        a, b = mem.datasets[name][len(mem.datasets[name]) - 1], disk.datasets[name][len(disk.datasets[name]) - 1]
        assert a.keys() == b.keys()
        for key in a:
            assert torch_equal(a[key], b[key]), key


def torch_equal(a, b):
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


def test_other_cutoff_recounts_neighbours(tmp_path, cuag_file):
    preprocess([str(cuag_file)], str(tmp_path / "ds"), cutoff=3.0, progress=False)
    mem = FrameDataModule(train=str(cuag_file), cutoff=4.5)
    disk = FrameDataModule(train=str(tmp_path / "ds"), cutoff=4.5)
    mem.prepare()
    disk.prepare()
    assert disk.statistics["avg_num_neighbors"] == pytest.approx(mem.statistics["avg_num_neighbors"], rel=1e-12)


def test_bad_frame_is_named_as_when_loading(tmp_path):
    frames = cuag_frames(9)
    frames[6].calc.results["forces"][2, 1] = np.nan
    path = tmp_path / "bad.extxyz"
    write(path, frames)
    with pytest.raises(DataError) as loading:
        read_frames(str(path))
    for workers in (1, 2):
        with pytest.raises(DataError) as err:
            preprocess([str(path)], str(tmp_path / f"ds{workers}"), cutoff=4.0, workers=workers, chunk_frames=2,
                       progress=False)
        assert str(err.value) == str(loading.value)
        assert "frame 6" in str(err.value) and "NaN" in str(err.value)
    overlap = cuag_frames(3)
    overlap[1].positions[1] = overlap[1].positions[0] + 0.01
    write(tmp_path / "overlap.extxyz", overlap)
    with pytest.raises(DataError, match=r"overlap.extxyz, frame 1: atoms 0 and 1 .* overlapping"):
        preprocess([str(tmp_path / "overlap.extxyz")], str(tmp_path / "ov"), cutoff=4.0, progress=False)


def test_killed_preprocess_resumes_to_the_same_dataset(tmp_path, cuag_file, monkeypatch):
    reference = _store(tmp_path, [cuag_file], "ref", chunk_frames=5)
    real_commit = store_writer._commit
    calls = []

    def dies_after_two(store, result, bar):
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill between transactions (LMDB commits each chunk atomically)
        calls.append(result["task"])
        real_commit(store, result, bar)

    monkeypatch.setattr(store_writer, "_commit", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        preprocess([str(cuag_file)], str(tmp_path / "ds"), cutoff=4.0, chunk_frames=5, progress=False)
    with pytest.raises(DataError, match="did not finish.*resume"):
        read_manifest(str(tmp_path / "ds"))
    monkeypatch.setattr(store_writer, "_commit", real_commit)
    seen = []
    original = store_writer._label_chunk
    monkeypatch.setattr(store_writer, "_label_chunk", lambda task: seen.append(task["chunk"]) or original(task))
    resumed = _store(tmp_path, [cuag_file], "ds", chunk_frames=5)
    assert seen == [2, 3, 4]  # chunks 0 and 1 were committed before the kill: not redone
    assert resumed.statistics == reference.statistics
    assert [(s.index, s.energy) for s in resumed.summaries] == [(s.index, s.energy) for s in reference.summaries]


def test_append_and_refusals(tmp_path, cuag_file):
    other = tmp_path / "more.extxyz"
    write(other, cuag_frames(10, seed=5))
    both = _store(tmp_path, [cuag_file, other], "both")
    _store(tmp_path, [cuag_file], "grown")
    grown = _store(tmp_path, [other], "grown")  # appended later
    assert len(grown) == 34 and grown.statistics == both.statistics
    assert [s.source for s in grown.summaries] == [s.source for s in both.summaries]
    with pytest.raises(ConfigError, match="cutoff=4.0.*5.0"):
        preprocess([str(other)], str(tmp_path / "grown"), cutoff=5.0, progress=False)
    write(other, cuag_frames(11, seed=5))  # the file changes after it was added
    with pytest.raises(DataError, match="more.extxyz: changed since"):
        preprocess([str(other)], str(tmp_path / "grown"), cutoff=4.0, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an mlip dataset and not empty"):
        preprocess([str(cuag_file)], str(tmp_path / "notes"), cutoff=4.0, progress=False)


def test_non_xyz_formats_stream_through_ase(tmp_path):
    frames = cuag_frames(7)
    write(tmp_path / "cuag.traj", frames)
    write(tmp_path / "cuag.extxyz", frames)
    traj = _store(tmp_path, [tmp_path / "cuag.traj"], "traj", chunk_frames=3, workers=2)
    xyz = _store(tmp_path, [tmp_path / "cuag.extxyz"], "xyz", chunk_frames=3)
    # extxyz stores 8 decimals; traj full precision
    assert traj.statistics["force_rms"] == pytest.approx(xyz.statistics["force_rms"], rel=1e-8)
    assert [s.energy for s in traj.summaries] == pytest.approx([s.energy for s in xyz.summaries], rel=1e-8)


def test_store_keys_must_agree(tmp_path, cuag_file):
    preprocess([str(cuag_file)], str(tmp_path / "ds"), cutoff=4.0, progress=False)
    dm = FrameDataModule(train=str(tmp_path / "ds"), cutoff=4.0, keys={"energy": "REF_energy"})
    with pytest.raises(ConfigError, match="data.keys.*preprocessed"):
        dm.prepare()
    assert json.loads((tmp_path / "ds" / "mlip_dataset.json").read_text())["keys"] == LabelKeys().as_dict()


def test_each_rank_reads_only_its_shard(tmp_path, cuag_file, monkeypatch):
    """Under DDP a rank reads the frames its sampler gives it and no other; validation frames are
    read once across ranks."""
    from types import SimpleNamespace

    from mlip.data.store import reader

    preprocess([str(cuag_file)], str(tmp_path / "ds"), cutoff=4.0, progress=False)
    dm = FrameDataModule(train=str(tmp_path / "ds"), cutoff=4.0, batch_size=2, eval_batch_size=3, val_fraction=0.3)
    dm.prepare()
    real = reader.read_frame
    reads = []
    monkeypatch.setattr(reader, "read_frame", lambda path, s, i, src: reads.append(i) or real(path, s, i, src))
    train_idx = dm.datasets["train"].indices
    val_idx = dm.datasets["val"].indices
    seen_val = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(0)
        reads.clear()
        for _ in loader:
            pass
        assert sorted(reads) == sorted(int(train_idx[k]) for k in loader.sampler)
        assert len(reads) == -(-len(train_idx) // 2)  # half of the training frames (padded), not all
        reads.clear()
        for _ in dm.val_dataloader():
            pass
        seen_val += reads
    assert sorted(seen_val) == sorted(int(i) for i in val_idx)  # each validation frame once


@pytest.mark.slow
def test_training_on_store_equals_training_on_extxyz(tmp_path, cuag_file):
    """One config, two back-ends: k-fold CV, learned sigmas, L2 regularisation and export give the
    same metrics from the extxyz and from its preprocessed directory (read by two loader workers)."""
    from hydra import compose, initialize_config_dir

    from mlip.cli.train import CONFIG_DIR, run

    preprocess([str(cuag_file)], str(tmp_path / "ds"), cutoff=4.0, progress=False)
    common = ["experiment=quick", "trainer.max_epochs=2", "data=custom", "model.cutoff=4.0", "split=kfold", "split.k=3",
              "loss.sigma=learned", "regularization=l2", "data.batch_size=4"]
    results = {}
    for name, extra in (("mem", [f"data.train={cuag_file}"]),
                        ("disk", [f"data.train={tmp_path / 'ds'}", "data.num_workers=2"])):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=common + extra)
        results[name] = run(cfg, tmp_path / name)
        assert (tmp_path / name / "model.pt").is_file()
    for split in ("val", "cv"):
        for key in ("energy_mae", "forces_mae", "stress_mae"):
            assert results["disk"][split][key] == pytest.approx(results["mem"][split][key], rel=1e-5), (split, key)
    assert results["disk"]["learned_sigma"] == pytest.approx(results["mem"]["learned_sigma"], rel=1e-5)


@pytest.mark.slow
def test_sigkill_during_preprocess_then_resume(tmp_path, cuag_file):
    """A real kill (SIGKILL, no clean-up) in the middle of preprocessing: the same command resumes
    and the dataset equals one written in one go."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ase.io import read

    path = tmp_path / "many.extxyz"
    write(path, read(cuag_file, ":") * 6)  # 144 frames
    reference = _store(tmp_path, [path], "ref", chunk_frames=1)
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "mlip.cli.main", "preprocess", str(path), "--output", str(out), "--cutoff", "4.0",
           "--chunk-frames", "1", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = out / "frames.lmdb" / "data.mdb"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (data.exists() and data.stat().st_size > 150_000):
        time.sleep(0.005)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if killed:
        with pytest.raises(DataError, match="did not finish"):
            read_manifest(str(out))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    resumed = FrameStore(str(out))
    assert resumed.statistics["n_frames"] == 144
    for key in ("force_rms", "avg_num_neighbors", "energy_per_atom_std"):
        assert resumed.statistics[key] == pytest.approx(reference.statistics[key], rel=1e-12)
    assert [(s.index, s.energy) for s in resumed.summaries] == [(s.index, s.energy) for s in reference.summaries]
