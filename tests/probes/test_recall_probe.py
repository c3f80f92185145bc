"""After short training, hybrid memory answers Recall at T=200 where a window of 4 steps is at chance.

The agent's own network, context, memory replay and action head, trained by the supervised recall probe
(``devlearn.probes.recall``) and evaluated by its evaluation policy on held-out
episodes. The curriculum (the probe's default: 300 updates at delay 10, 60 at delay 200) and the seed are fixed: learning to
retrieve is seed-dependent (docs/benchmarks.md, "Recall against episode length"), and this test pins a seed
that learns on the CI machine's torch; what it guards is that the memory path can carry a fact 200 steps and
that the window cannot.
"""

from __future__ import annotations

import pytest

from devlearn.probes.recall import recall_probe

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CURRICULUM = ((10, 300), (200, 60))


def test_hybrid_recalls_at_delay_200_where_the_window_is_at_chance() -> None:
    hybrid = recall_probe("hybrid", CURRICULUM, lr=1e-3, seed=0, eval_delays=(200,), eval_episodes=64)
    window = recall_probe("window", CURRICULUM, lr=1e-3, seed=0, eval_delays=(200,), eval_episodes=64)
    assert hybrid["chance"] == 0.25
    assert hybrid["heldout_accuracy"]["200"] >= 0.9, hybrid
    assert window["heldout_accuracy"]["200"] <= 0.4, window  # 64 episodes at chance: 0.25 +- 0.05


def test_the_probe_refuses_an_empty_curriculum() -> None:
    with pytest.raises(ValueError, match=r"give \(delay, updates\) pairs of positive integers"):
        recall_probe("hybrid", ((20, 0),))
    with pytest.raises(ValueError, match=r"give \(delay, updates\) pairs"):
        recall_probe("hybrid", ((20,),))
