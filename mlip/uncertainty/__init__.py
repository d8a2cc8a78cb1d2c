"""How far to trust a prediction: committees (``committee``), a single-model last-layer estimate
(``llpr``), and calibration of either against errors on held-out data (``calibration``)."""
