"""``FrameDataModule``: files -> checked frames -> split -> E0 and statistics -> graph datasets."""

import logging
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Union

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler

from mlip import targets
from mlip.data.checks import check_e0_consistency, check_energy_outliers, check_settings
from mlip.data.dataset import GraphDataset
from mlip.data.graph import species_error
from mlip.data.io import ISOLATED_BOX_WIDTH, Frame, LabelKeys, read_frames, require_labels
from mlip.data.reference import reference_energies
from mlip.data.split import group_labels, kfold_split, random_split
from mlip.data.statistics import dataset_statistics
from mlip.data.store import FrameStore, StoreGraphDataset, is_store
from mlip.errors import ConfigError, DataError
from mlip.fileio import write_json
from mlip.nn.batch import collate

log = logging.getLogger(__name__)

#: a split's graphs: in memory (frames read from a file) or read on demand (an on-disk dataset)
SplitDataset = Union[GraphDataset, StoreGraphDataset, ConcatDataset]


class FrameDataModule(L.LightningDataModule):
    """Reads ``train`` (and optional ``val``, ``test``) files and prepares everything a model
    needs to be built: species, E0 (eV), statistics and the config-type vocabulary.

    Without ``val``/``test`` files, frames of ``train`` are held out whole by a seeded random split
    (``val_fraction``, ``test_fraction``). Isolated-atom frames in ``train`` (one atom, not periodic)
    and the optional ``e0_file`` are used for E0 and not trained on. ``group_by`` (an ``atoms.info``
    key) keeps each group of frames inside one split.

    ``split="kfold"``: the frames of ``train`` are cut into ``k`` folds of whole configurations
    (whole groups with ``group_by``) and fold ``fold`` is held out as the ``cv`` split, evaluated
    once at the end (``metrics.json["cv"]``): the cross-validation estimate. The validation set that
    picks the best checkpoint and drives the learning-rate schedule is *not* the held-out fold but
    an inner split of ``val_fraction`` of the remaining folds' frames (or ``val`` when given):
    selecting the best epoch on the held-out fold would make its error optimistic, and more so for
    weakly regularised models (early stopping on the held-out data partly stands in for the
    regulariser), which would bias the choice of ``regularization.alpha``. The inner split is drawn
    frame by frame (see ``kfold_split``). ``test`` (a file) stays
    the test set of every fold; no test split is carved from ``train`` in this mode.

    ``require``: kinds every train/val frame must carry, among those the training split carries at
    all (a kind no training frame carries is left out of the loss, not required);
    ``require_if_present``: the same for ``loss.sigma=learned``. ``label_kinds`` lists the kinds the
    training split carries, ``label_counts`` the labelled frames of each kind per split.
    ``checks``: ``data.checks`` (``mlip.data.checks``), the plausibility checks run on every frame
    before the split: energies in another unit, E0 the data cannot determine or that does not fit.
    """

    def __init__(self, train: str, cutoff: float, val: Optional[str] = None, test: Optional[str] = None,
                 format: Optional[str] = None, keys: Optional[Dict[str, str]] = None, e0: Any = "auto",
                 e0_file: Optional[str] = None, require: Sequence[str] = ("energy", "forces"),
                 val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                 batch_size: int = 8, eval_batch_size: int = 16, num_workers: int = 0,
                 dtype: torch.dtype = torch.float32, split: str = "random", k: int = 5, fold: int = 0,
                 group_by: Optional[str] = None, require_if_present: Sequence[str] = (),
                 checks: Optional[Dict[str, str]] = None, species_order: Optional[Sequence[int]] = None,
                 fixed_e0: Optional[Dict[int, float]] = None, replay: Sequence[Frame] = ()):
        super().__init__()
        self.paths = {"train": train, "val": val, "test": test}
        self.format = format
        self.label_keys = LabelKeys(**dict(keys or {}))
        self.e0_spec = e0
        self.e0_file = e0_file
        self.require = list(require)
        self.cutoff = float(cutoff)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.split = split
        self.k = k
        self.fold = fold
        self.group_by = group_by
        self.require_if_present = list(require_if_present)
        self.checks = check_settings(checks)
        self.species_order = [int(z) for z in species_order or []]
        self.fixed_e0 = dict(fixed_e0 or {})
        self.replay = list(replay)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.dtype = dtype
        self.prepared = False

    # ------------------------------------------------------------------ preparation
    def _read(self, path: str, name: str) -> List[Any]:
        """The frames of ``path``: ``Frame`` objects read and checked from a file, or the
        ``FrameSummary`` objects of an on-disk dataset (``mlip preprocess``), whose frames are read
        when a loader asks for them (``self.stores[name]``)."""
        if not is_store(path):
            return read_frames(str(path), self.label_keys, format=self.format)
        store = FrameStore(path)
        if self.label_keys not in (LabelKeys(), store.label_keys):
            raise ConfigError(f"data.keys={self.label_keys.as_dict()} differ from the keys {path} was preprocessed "
                              f"with ({store.label_keys.as_dict()}): labels were read then; drop data.keys or "
                              "preprocess the files again with these keys")
        self.stores[name] = store
        return store.summaries

    def prepare(self) -> None:
        """Read, check, split and summarise. Idempotent; call before building the model."""
        if self.prepared:
            return
        self.stores: Dict[str, FrameStore] = {}
        frames = self._read(str(self.paths["train"]), "train")
        isolated = [f for f in frames if f.is_isolated_atom]
        frames = [f for f in frames if not f.is_isolated_atom]
        if self.e0_file:
            extra = self._read(self.e0_file, "e0_file")
            if not any(f.is_isolated_atom and f.energy is not None for f in extra):
                raise DataError("data.e0_file holds no isolated-atom frame with an energy (one atom, pbc=F or a "
                                f"periodic box at least {ISOLATED_BOX_WIDTH:g} Å wide)", self.e0_file)
            isolated += extra
        if not frames:
            raise DataError("no training frames (after removing isolated atoms used for E0)", self.paths["train"])

        files = {name: [f for f in self._read(str(self.paths[name]), name) if not f.is_isolated_atom]
                 for name in ("val", "test") if self.paths[name]}
        every = frames + [f for fs in files.values() for f in fs]
        check_energy_outliers(every, sorted({z for f in every for z in f.composition}),
                              self.checks["energy_outliers"])

        splits: Dict[str, List[Any]] = {}
        idx = self._split_indices(frames)
        for name in ("train", "val", "test", "cv"):
            if name == "cv":
                if self.split == "kfold":
                    splits[name] = [frames[i] for i in idx[name]]
            elif name in files:
                splits[name] = files[name]
                self.split_indices[f"{name}_file"] = self.paths[name]
            else:
                splits[name] = [frames[i] for i in idx[name]]
        for name in ("train", "val"):
            if not splits[name]:
                raise DataError(f"the {name} split is empty (set split.{name}_fraction > 0 or data.{name}=<file>)",
                                self.paths[name] or self.paths["train"])
        self.label_counts = {name: {k: sum(k in f.kinds for f in fs) for k in targets.names()}
                             for name, fs in splits.items()}
        self.label_kinds = [k for k in targets.names() if self.label_counts["train"][k]]
        if not self.label_kinds:
            names = self._names_in(splits["train"])
            raise DataError("no training frame carries an energy, forces or stress (looked for data.keys "
                            f"{vars(self.label_keys)}; the frames hold {', '.join(names) or 'nothing else'})"
                            + self._suggest_keys(names), self.paths["train"])
        require = [k for k in self.require + self.require_if_present if k in self.label_kinds]
        for name in ("train", "val"):
            require_labels(splits[name], list(dict.fromkeys(require)))

        present = sorted({z for f in splits["train"] for z in f.composition})
        self.species = self.species_order + [z for z in present if z not in self.species_order]
        species_index = {z: k for k, z in enumerate(self.species)}
        for name in ("val", "test", "cv"):
            for f in splits.get(name, []):
                species_error(f, species_index)
        e0, self.e0_source = reference_energies(self.e0_spec, splits["train"], self.species, isolated,
                                                self.checks["e0_underdetermined"], fixed=self.fixed_e0)
        check_e0_consistency(splits["train"], e0, self.e0_source, self.checks["e0_consistency"])
        self.e0 = [e0[z] for z in self.species]
        self.config_types = sorted({f.config_type for fs in [*splits.values(), self.replay] for f in fs})
        self.datasets: Dict[str, SplitDataset] = {
            name: self._dataset(name if name in files else "train", fs, species_index)
            for name, fs in splits.items() if fs}
        self.statistics = dataset_statistics(splits["train"], self._train_edges(splits["train"]), e0)
        if self.statistics["avg_num_neighbors"] == 0:
            raise DataError(f"no atom of the training frames has a neighbour within model.cutoff={self.cutoff:g} Å, so "
                            "the model would see isolated atoms only: raise model.cutoff (typically 4-6 Å)",
                            self.paths["train"])
        if self.replay:  # fine-tuning: earlier training frames mixed into every epoch
            for f in self.replay:
                species_error(f, species_index)
            replayed = GraphDataset(self.replay, self.cutoff, species_index, self.config_types)
            self.datasets["train"] = ConcatDataset([self.datasets["train"], replayed])
            self.label_counts["replay"] = {k: sum(k in f.kinds for f in self.replay) for k in targets.names()}
            splits["replay"] = self.replay
        self._train_frames_names = self._names_in(splits["train"])
        self.n_periodic_train = sum(bool(f.pbc.all()) for f in splits["train"])
        self.prepared = True
        from ase.data import chemical_symbols
        log.info("frames: %s", {k: len(v) for k, v in splits.items()})
        log.info("E0 (eV): %s", {chemical_symbols[z]: round(v, 6) for z, v in zip(self.species, self.e0)})
        log.info("statistics: %s", {k: round(v, 6) for k, v in self.statistics.items()})

    def _dataset(self, source: str, frames: List[Any], species_index: Dict[int, int]) -> "SplitDataset":
        """Graphs of a split whose frames came from ``data.<source>``: built now and kept in memory
        for frames read from a file, built on demand (in the loader's workers) for frames of an
        on-disk dataset."""
        store = self.stores.get(source)
        if store is not None:
            return StoreGraphDataset(store.path, frames, self.cutoff, species_index, self.config_types)
        return GraphDataset(frames, self.cutoff, species_index, self.config_types)

    def _train_edges(self, frames: List[Any]) -> int:
        """Directed edges within ``cutoff`` in the training split: from the graphs in memory, from
        the counts stored by ``mlip preprocess`` when it used this cutoff, else by a pass over the data."""
        ds = self.datasets["train"]
        if isinstance(ds, GraphDataset):
            return sum(int(g["edge_index"].shape[1]) for g in ds.graphs)
        if abs(self.stores["train"].cutoff - self.cutoff) < 1e-9:
            return sum(f.n_edges for f in frames)
        log.info("counting neighbours within model.cutoff=%g Å in %d training frames (the dataset stores them for "
                 "%g Å; preprocess with --cutoff %g to skip this pass)", self.cutoff, len(frames),
                 self.stores["train"].cutoff, self.cutoff)
        assert isinstance(ds, StoreGraphDataset)
        return ds.edge_counts()

    @staticmethod
    def _names_in(frames: Sequence[Frame]) -> List[str]:
        return sorted({n for f in frames for n in f.label_names})

    @staticmethod
    def _suggest_keys(names: Sequence[str]) -> str:
        """``: try data.keys.energy=REF_energy ...`` for names that contain a kind's name."""
        guesses = [f"data.keys.{kind}={name}" for kind in targets.default_file_keys()
                   for name in names if kind in name.lower() and name != kind][:4]
        return f": try {' '.join(guesses)}" if guesses else ""

    def absent_label_hint(self, kind: str) -> str:
        """Why ``kind`` is not in the training split and how to point mlip at it."""
        key = getattr(self.label_keys, kind)
        names = [n for n in self._train_frames_names if n != key]
        return (f"no training frame carries {kind} (data.keys.{kind}={key!r}; the frames hold "
                f"{', '.join(names) or 'no other entries'}); if it is under another name, set data.keys.{kind}"
                + self._suggest_keys([n for n in names if kind in n.lower()]))

    def _split_indices(self, frames: List[Frame]) -> Dict[str, List[int]]:
        """Indices (into the non-isolated frames of ``train``) of each split; fills ``split_indices``."""
        source = self.paths["train"]
        groups = group_labels(frames, self.group_by, source) if self.group_by else None
        info: Dict[str, Any] = {"method": self.split, "train_file": source, "group_by": self.group_by}
        if self.split == "kfold":
            val_fraction = self.val_fraction if not self.paths["val"] else 0.5  # unused with a val file
            idx = kfold_split(len(frames), self.k, self.fold, val_fraction, self.seed, groups, source)
            folds = idx.pop("folds")
            if self.paths["val"]:  # the val file validates; all other folds train
                idx["train"] = sorted(idx["train"] + idx["val"])
                idx["val"] = []
            info.update(k=self.k, fold=self.fold, folds=folds)
            if groups is not None:
                info["groups"] = {g: folds[i] for i, g in enumerate(groups)}
        elif self.split == "random":
            test_fraction = 0.0 if self.paths["test"] else self.test_fraction
            val_fraction = 0.0 if self.paths["val"] else self.val_fraction
            idx = random_split(len(frames), val_fraction, test_fraction, self.seed, source, groups)
            if groups is not None:
                where = {i: name for name in ("train", "val", "test") for i in idx[name]}
                info["groups"] = {g: where[i] for i, g in enumerate(groups)}
        else:
            raise ConfigError(f"split.name={self.split!r} is not known; use random or kfold")
        self.split_indices = {**info, **idx}
        return idx

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare()

    def summary(self) -> Dict[str, Any]:
        from ase.data import chemical_symbols
        return {
            "species": [chemical_symbols[z] for z in self.species],
            "e0_eV": {chemical_symbols[z]: v for z, v in zip(self.species, self.e0)},
            "e0_source": self.e0_source,
            "labels": self.label_counts,
            "statistics": self.statistics,
            "n_frames": {k: len(v) for k, v in self.datasets.items()},
            **({"replayed_frames": len(self.replay)} if self.replay else {}),
            "config_types": self.config_types,
        }

    def save_split(self, path: str) -> None:
        """Write the frame indices of each split (whole configurations) as JSON (atomically)."""
        write_json(path, self.split_indices)

    # ------------------------------------------------------------------ loaders
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        """Training (``shuffle``): each epoch's order is a function of (``seed``, epoch) alone, so a
        run resumed at epoch k sees the order an uninterrupted run sees there (Lightning calls the
        sampler's ``set_epoch``); with several ranks the order is split and padded across them.
        Evaluation: each frame exactly once across ranks."""
        ds = self.datasets[name]
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler: Any
        if shuffle:
            sampler = DistributedSampler(ds, world, rank, shuffle=True, seed=self.seed)
        else:
            sampler = list(range(rank, len(ds), world)) if world > 1 else None
        return DataLoader(
            ds, batch_size=self.batch_size if shuffle else self.eval_batch_size, sampler=sampler,
            collate_fn=partial(collate, dtype=self.dtype), num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def eval_loader(self, name: str) -> DataLoader:
        """Single-process loader over a whole split (for final evaluation on rank 0)."""
        return DataLoader(self.datasets[name], batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=partial(collate, dtype=self.dtype), num_workers=self.num_workers)
