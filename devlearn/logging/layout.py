"""TensorBoard's Custom Scalars layout: the first screen is the learning curves, not a wall of single-dot cards.

``write_layout`` stores the layout in the run's event file once; TensorBoard's "Custom Scalars" tab
shows it. A chart lists every tag that may carry its curve (SB3 and devlearn agents name the return
differently; older world models have no ``acc_changed``): missing tags are simply not drawn.
"""

from __future__ import annotations

from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

LAYOUT: dict[str, dict[str, list[Any]]] = {
    "1. learning curves": {
        "return (last 100 episodes)": ["Multiline", ["rollout/return", "rollout/ep_rew_mean"]],
        "success rate": ["Multiline", ["rollout/success_rate"]],
        "catastrophe rate": ["Multiline", ["rollout/catastrophe_rate"]],
        "world model: changed-cell accuracy": [
            "Multiline",
            ["world_model/acc_changed", "world_model/acc_obs", "world_model/acc_token"],
        ],
    },
    "2. consequences": {
        "catastrophes (total)": ["Multiline", ["rollout/catastrophes_total"]],
        "cost (last 100 episodes)": ["Multiline", ["rollout/cost"]],
        "Lagrangian multiplier and episode cost (agent=ppo_lagrangian)": [
            "Multiline",
            ["train/lagrangian_multiplier", "train/episode_cost"],
        ],
        "shield": [
            "Multiline",
            ["shield/fire_rate", "shield/precision", "shield/recall", "shield/false_mask_rate", "shield/ece"],
        ],
    },
    "3. health": {
        "rollbacks": ["Multiline", ["train/rollbacks"]],
        "steps/s": ["Multiline", ["time/steps_per_s"]],
        "PPO": ["Multiline", ["train/approx_kl", "train/clip_fraction", "train/explained_variance"]],
    },
}

# The final figures the HParams tab shows per run: existing eval/* tags, not copies of them.
HPARAM_METRICS = ("return", "success", "catastrophe_rate")


def write_layout(writer: SummaryWriter) -> None:
    writer.add_custom_scalars(LAYOUT)


def write_hparams(writer: SummaryWriter, hparams: dict[str, Any], metric_tags: list[str]) -> None:
    """The HParams tab's entry for this run, pointing at scalars already written (``eval/*``).

    ``SummaryWriter.add_hparams`` also writes every metric again as a scalar at step 0, which put
    a duplicate single-dot card of each ``eval/*`` figure under ``hparam/``; this writes only the
    experiment, session-start and session-end records.
    """
    exp, ssi, sei = hparams_summary(hparams, {tag: 0.0 for tag in metric_tags})
    file_writer = writer._get_file_writer()
    for record in (exp, ssi, sei):
        file_writer.add_summary(record)
