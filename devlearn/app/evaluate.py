"""Evaluate a policy over many episodes: return, success, catastrophe rate and cost, kept apart.

Success is decided once, by ``devlearn.envs.vector.episodes.episode_success`` (``info["success"]`` when
the env reports it, else "ended by termination with positive reward"), and every table says which rule
applied. An agent is evaluated twice: acting by argmax (its most likely action) and by sampling from its
policy, because a policy can succeed only when sampled (or only when not). Catastrophes per success
puts the two consequences side by side: a policy that never moves has no catastrophes and no successes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

from devlearn.envs.vector.episodes import SUCCESS_RULES, EpisodeStats, real_transitions
from devlearn.envs.vector.make import make_vector_env
from devlearn.logging.progress import EpisodeProgress

METRICS = ("return", "success", "catastrophe_rate", "catastrophes_per_success", "cost", "length")
POLICY_MODES: dict[str, bool] = {"argmax": True, "sampled": False}  # name -> policy(deterministic=...)
MAX_EVAL_ENVS = 64  # sub-envs an evaluation steps at once (more episodes run in rounds)


def eval_num_envs(episodes: int, max_envs: int = MAX_EVAL_ENVS) -> int:
    """Sub-envs for ``episodes`` episodes: all at once up to ``max_envs``, else the fewest even rounds.

    Every sub-env plays the same number of episodes (``run_episodes``), so a count that does not divide
    wastes the excess: 20 episodes on 8 envs play 24. 20 -> 20 envs (one round); 100 -> 50 (two rounds).
    """
    rounds = -(-max(episodes, 1) // max_envs)
    return -(-max(episodes, 1) // rounds)


def run_episodes(
    policy: Callable[[Any, np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    num_envs: int | None = None,
    seed: int = 0,
    vectorization: str = "auto",
    wrappers: Sequence[Callable[[Any], Any]] = (),
    progress: EpisodeProgress | None = None,
    **env_kwargs: Any,
) -> list[dict[str, float]]:
    """Run ``episodes`` full episodes of ``policy(obs, episode_start) -> actions`` (all batched).

    Every sub-env plays the same number of episodes, so short episodes (falls, say) are not
    over-represented as they would be by taking the first ``episodes`` to finish. ``num_envs``
    defaults to ``eval_num_envs(episodes)``: as many episodes at once as the batch allows. A policy with an
    ``observe(next_obs, reward, terminated, truncated, info, after_done)`` method is told each step's outcome
    (dynamic evaluation learns from it). ``progress`` is shown the episodes done and env steps taken.
    """
    observe = getattr(policy, "observe", None)
    num_envs = eval_num_envs(episodes) if num_envs is None else num_envs
    env = make_vector_env(env_id, max(1, min(num_envs, episodes)), vectorization, wrappers, **env_kwargs)
    num_envs = env.num_envs  # a multi-agent env may round to whole copies
    quota = -(-episodes // num_envs)
    stats, results = EpisodeStats(num_envs), []
    played = np.zeros(num_envs, dtype=np.int64)
    obs, _ = env.reset(seed=seed)
    start = np.ones(num_envs, dtype=bool)  # this observation begins an episode
    after_done = np.zeros(num_envs, dtype=bool)  # the last step ended an episode: this one only resets
    steps = 0
    try:
        while (played < quota).any():
            obs, reward, terminated, truncated, info = env.step(policy(obs, start))
            if observe is not None:
                observe(obs, reward, terminated, truncated, info, after_done)
            real = real_transitions(info, num_envs, after_done=after_done)
            steps += int(real.sum())
            stats.update(reward, info, real=real, terminated=terminated)
            done = (terminated | truncated) & real
            for i, ep in zip(np.flatnonzero(done), stats.pop(done), strict=True):
                if played[i] < quota:
                    results.append(ep)
                played[i] += 1
            start, after_done = after_done, done
            if progress is not None:
                progress.update(min(len(results), episodes), steps)
    finally:
        env.close()
    if progress is not None:
        progress.finish(min(len(results), episodes), steps)
    return results[:episodes]


def catastrophes_per_success(catastrophes: int, successes: int) -> float:
    """Catastrophes per success: ``inf`` when catastrophes came with no success, ``nan`` when neither happened."""
    if successes:
        return catastrophes / successes
    return math.inf if catastrophes else math.nan


def _means(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    if not episodes:
        return {m: float("nan") for m in METRICS} | {"episodes": 0}
    col = {
        k: np.array([e[k] for e in episodes], dtype=float)
        for k in ("return", "success", "catastrophe", "cost", "length")
    }
    return {
        "return": float(col["return"].mean()),
        "success": float(col["success"].mean()),
        "catastrophe_rate": float(col["catastrophe"].mean()),
        "catastrophes_per_success": catastrophes_per_success(
            int(col["catastrophe"].sum()), int(col["success"].sum())
        ),
        "cost": float(col["cost"].mean()),
        "length": float(col["length"].mean()),
        "episodes": len(episodes),
    }


def summarize(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over episodes, named as in the tables (``METRICS``), and how success was decided.

    ``success_rule`` is a key of ``SUCCESS_RULES`` (or ``"mixed"``). When the env flagged some episodes as
    beyond training's layouts (``info["out_of_range"]``), ``in_range`` and ``out_of_range`` hold the same
    figures for each part, so an extrapolation is never averaged into a generalization result unlabelled.
    """
    summary = _means(episodes)
    rules = sorted({str(e.get("success_rule", "info")) for e in episodes})
    summary["success_rule"] = rules[0] if len(rules) == 1 else ("mixed" if rules else "none")
    if any(e.get("out_of_range", False) for e in episodes):
        summary["in_range"] = _means([e for e in episodes if not e.get("out_of_range", False)])
        summary["out_of_range"] = _means([e for e in episodes if e.get("out_of_range", False)])
    return summary


def evaluate_policies(
    agent: Any,
    env_id: str,
    episodes: int,
    seed: int = 0,
    wrappers: Sequence[Callable[[Any], Any]] = (),
    label: str | None = None,
    stream: TextIO | None = None,
    **env_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """``{"argmax": summary, "sampled": summary}``: ``agent.policy(deterministic)`` both ways, same episodes' seeds.

    ``label`` (e.g. ``"eval heldout"``): show a progress line per mode on ``stream`` (default stdout).
    """
    return {
        mode: summarize(
            run_episodes(
                agent.policy(deterministic),
                env_id,
                episodes,
                seed=seed,
                wrappers=wrappers,
                progress=None if label is None else EpisodeProgress(f"{label} {mode}", episodes, stream),
                **env_kwargs,
            )
        )
        for mode, deterministic in POLICY_MODES.items()
    }


def _cell(value: float, width: int) -> str:
    return f"{value:>{width}.3f}" if math.isfinite(value) else f"{'inf' if value > 0 else 'n/a':>{width}}"


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A console table, one row per split (or split and policy), with how success was decided beneath it.

    Rows whose summary holds ``in_range`` / ``out_of_range`` parts get one more row for each part.
    """
    # Wide enough for every row label, " [out of range]" included where a row has that part.
    width = 2 + max([14, *(len(n) + (15 if "out_of_range" in r else 0) for n, r in rows.items())])
    widths = {m: max(12, len(m) + 2) for m in METRICS}
    header = f"{'split':<{width}}" + "".join(f"{m:>{widths[m]}}" for m in METRICS) + f"{'episodes':>10}"
    lines = [header, "-" * len(header)]
    rules = set()
    for name, r in rows.items():
        parts = [(name, r)]
        if "out_of_range" in r:
            parts += [(f"{name} [in range]", r["in_range"]), (f"{name} [out of range]", r["out_of_range"])]
        for label, figures in parts:
            lines.append(
                f"{label:<{width}}"
                + "".join(_cell(figures[m], widths[m]) for m in METRICS)
                + f"{figures['episodes']:>10d}"
            )
        rules.add(r.get("success_rule", "none"))
    described = [SUCCESS_RULES.get(rule, rule) for rule in sorted(rules)]
    lines.append("success: " + "; ".join(described))
    lines.append("catastrophes_per_success: inf = catastrophes but no success, n/a = neither")
    if any("out_of_range" in r for r in rows.values()):
        lines.append("out of range: layouts beyond anything in the training split (e.g. longer distances)")
    return "\n".join(lines)
