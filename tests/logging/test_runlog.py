"""RunLog's ``monitors``: what results.json says the world model, the shield and memory ended as."""

from __future__ import annotations

import math

from devlearn.logging.runlog import RunLog


def test_monitors_are_the_mean_of_each_tags_last_ten_values() -> None:
    log = RunLog(None, 1000, progress=False)  # no writer: the figures are kept all the same
    for step in range(15):
        log.scalars(
            {
                "world_model/acc_changed": float(step),  # the last 10 are 5 .. 14
                "shield/recall": math.nan if step % 2 else 1.0,  # NaN (nothing to measure) is left out
                "train/policy_loss": 3.0,  # not a monitor
                "memory/store_size": 7.0,
            },
            step,
        )
    log.scalars({"shield/false_mask_rate": math.nan}, 15)  # never finite: no entry at all
    assert log.monitors() == {"memory/store_size": 7.0, "shield/recall": 1.0, "world_model/acc_changed": 9.5}
