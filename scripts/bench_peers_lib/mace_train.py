"""``mace_run_train`` with a wall-clock training budget (mace-torch 0.3.16 has no time limit).

Runs inside the MACE environment and imports nothing from this folder:

    <venv>/bin/python mace_train.py --budget-s 900 --timing-out timing.json -- <mace_run_train args>

The clock starts when MACE begins its first training epoch (after reading the data, computing
statistics and the initial validation) and the budget is checked before every optimiser step;
once it is spent the current epoch is abandoned and MACE carries on as after its last epoch:
it reloads the best checkpoint (lowest validation loss, EMA weights), evaluates and saves
``<name>.model``. Validation after each epoch counts towards the budget, as in Lightning.
Writes ``{"fit_time_s", "epochs", "steps", "stopped_by_budget"}`` to ``--timing-out``.
"""

import json
import sys
import time


class _BudgetSpent(Exception):
    pass


def main() -> None:
    argv = sys.argv[1:]
    sep = argv.index("--")
    own, mace_args = argv[:sep], argv[sep + 1:]
    budget = float(own[own.index("--budget-s") + 1])
    timing_out = own[own.index("--timing-out") + 1]

    import mace.tools as tools
    from mace.cli import run_train

    train_module = sys.modules["mace.tools.train"]
    state = {"start": None, "end": None, "epochs": 0, "steps": 0, "stopped_by_budget": False}
    orig_epoch, orig_step, orig_train = train_module.train_one_epoch, train_module.take_step, tools.train

    def train_one_epoch(*args, **kwargs):
        if state["start"] is None:
            state["start"] = time.perf_counter()
        orig_epoch(*args, **kwargs)
        state["epochs"] += 1

    def take_step(*args, **kwargs):
        if time.perf_counter() - state["start"] >= budget:
            raise _BudgetSpent
        state["steps"] += 1
        return orig_step(*args, **kwargs)

    def train(*args, **kwargs):
        try:
            orig_train(*args, **kwargs)
        except _BudgetSpent:
            state["stopped_by_budget"] = True
        state["end"] = time.perf_counter()

    train_module.train_one_epoch = train_one_epoch
    train_module.take_step = take_step
    tools.train = train
    run_train.tools.train = train  # run_train calls tools.train through the package

    sys.argv = ["mace_run_train", *mace_args]
    run_train.main()
    fit = (state["end"] or time.perf_counter()) - (state["start"] or time.perf_counter())
    with open(timing_out, "w") as fh:
        json.dump({"fit_time_s": fit, "epochs": state["epochs"], "steps": state["steps"],
                   "stopped_by_budget": state["stopped_by_budget"]}, fh)


if __name__ == "__main__":
    main()
