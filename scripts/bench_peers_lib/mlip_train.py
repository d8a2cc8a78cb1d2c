"""``python train.py`` with the benchmark's FitTimer callback added to mlip's Lightning Trainer,
so that mlip's training time is measured exactly as NequIP's (from Lightning's
``on_train_start``, when ``trainer.max_time`` starts counting, to ``on_train_end``):

    python mlip_train.py --timing-out timing.json -- <train.py Hydra overrides>
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    argv = sys.argv[1:]
    sep = argv.index("--")
    own, overrides = argv[:sep], argv[sep + 1:]
    timing_out = own[own.index("--timing-out") + 1]

    import lightning as L
    from fit_timer import FitTimer

    orig_init = L.Trainer.__init__

    def init(self, *args, callbacks=None, **kwargs):
        orig_init(self, *args, callbacks=[*(callbacks or []), FitTimer(timing_out)], **kwargs)

    L.Trainer.__init__ = init
    from mlip.cli.train import main as train_main

    sys.argv = ["train.py", *overrides]
    train_main()


if __name__ == "__main__":
    main()
