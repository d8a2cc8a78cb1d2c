"""Energy models: a batch in, atomic and total energies out. Forces and stress are added by
``mlip.physics``; ``build_model`` makes any registered model from its config."""

from mlip.models.registry import MODEL_REGISTRY, build_model  # noqa: F401
