"""`python benchmarks/_first_step.py MARKER [overrides]`: run `train.py` as `python train.py [overrides]` would,
record when the first training step begins and ends (wall clock, `time.time()`), write them to MARKER and exit.

Used by `speed.py --e2e` to time process start -> first step: interpreter start, imports, composing the
config, data preparation, model loading and Lightning set-up, without the rest of the run. The only change to
the real path is one extra Lightning callback, added by wrapping `ptrain.train.run`.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    marker = Path(sys.argv[1])
    sys.argv = [str(ROOT / "train.py"), *sys.argv[2:]]
    sys.path.insert(0, str(ROOT))
    import ptrain.train as ptrain_train  # light: omegaconf only; train.py imports it anyway

    real_run = ptrain_train.run

    def run_with_marker(cfg, callbacks=None):
        import lightning as L  # imported where ptrain imports it, so the import order stays the real one

        stamps: dict[str, float] = {}

        class FirstStep(L.Callback):
            def on_train_batch_start(self, *args, **kwargs) -> None:
                stamps.setdefault("first_step_start", time.time())

            def on_train_batch_end(self, *args, **kwargs) -> None:
                stamps["first_step_end"] = time.time()
                marker.write_text(json.dumps(stamps))
                os._exit(0)  # the measurement is complete: skip the rest of training, validation and test

        return real_run(cfg, [*(callbacks or []), FirstStep()])

    ptrain_train.run = run_with_marker
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")


if __name__ == "__main__":
    main()
