"""The on-disk dataset: ``mlip preprocess`` writes it (``writer``), training reads it lazily
(``reader``). LMDB records (``records``) in a directory laid out as ``layout`` says, with
statistics accumulated in one pass (``statistics``)."""

from mlip.data.store.layout import is_store
from mlip.data.store.reader import FrameStore, StoreGraphDataset, read_any, read_manifest
from mlip.data.store.summary import FrameSummary
from mlip.data.store.writer import preprocess

__all__ = ["FrameStore", "FrameSummary", "StoreGraphDataset", "is_store", "preprocess", "read_any", "read_manifest"]
