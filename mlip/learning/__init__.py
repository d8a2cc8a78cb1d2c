"""Active learning pieces: exploration by MD with a committee, stopped where it is unsure
(``explore``), and selection of uncertain, diverse frames to label (``select``). The loop itself is
``mlip learn`` (``mlip/cli/learn.py``)."""
