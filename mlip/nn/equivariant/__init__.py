"""Equivariant building blocks on channelwise features [N, C, D] (C channels, each the same list of
O(3) irreps laid out in D components; see ``irreps``):

- ``irreps``: irreps lists, their layout and sizes.
- ``coupling``: Clebsch-Gordan coupling tensors as dense matrices (pairs, and symmetric products
  of any number of copies, built recursively).
- ``channel_mixing``: equivariant linear maps across channels (per species if wanted).
- ``symmetric_contraction``: MACE's symmetric contraction of the atomic basis, any correlation order.
- ``interaction``: one message-passing layer, in two algorithms (scalar or tensor inputs).

Models (``mlip.models.equivariant``) are built from these; nothing here imports ``mlip.models``.
"""
