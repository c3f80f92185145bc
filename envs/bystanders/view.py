"""What agents see and report in Bystanders: observations, infos and RGB frames of a ``WorldState``."""

from __future__ import annotations

import numpy as np

from devlearn.envs.bystanders.layout import HEIGHT, WIDTH
from devlearn.envs.bystanders.rules import Rules, StepOutcome, WorldState, hunting

# Observation channels (uint8 planes, 255 = "on"); see ``observe``.
CHANNELS: tuple[str, ...] = (
    "wall",
    "self",
    "learners",
    "bystanders",
    "grudge",
    "hunting",
    "health",
    "wallet",
)
RENDER_TILE = 16

# The same keys for every agent, at reset and at every step, so batched infos are complete.
INFO_KEYS: tuple[str, ...] = ("cost", "catastrophe", "success", "robbed", "helped", "thanked")
INFO_KEYS += ("hit", "hits_dealt", "health", "money")


def learner_info(state: WorldState, out: StepOutcome | None, i: int) -> dict:
    """Learner ``i``'s info after ``out`` (``None``: the reset info, all consequences zero)."""
    return {
        "cost": float(out.cost[i]) if out else 0.0,
        "catastrophe": bool(out.died[i]) if out else False,
        "success": bool(out.success[i]) if out else False,
        "robbed": bool(out.robbed[i]) if out else False,
        "helped": bool(out.helped[i]) if out else False,
        "thanked": bool(out.thanked[i]) if out else False,
        "hit": int(out.hits[i]) if out else 0,
        "hits_dealt": 0,
        "health": int(state.health[i]),
        "money": float(state.money[i]),
    }


def bystander_info(state: WorldState, rules: Rules, out: StepOutcome | None, b: int) -> dict:
    """A learning bystander's info: ``robbed``/``helped`` mean it *was* robbed/helped; cost is 1 per
    robbery suffered; success means it reached the end of the day never robbed; it cannot be hurt."""
    return {
        "cost": float(out.bystander_cost[b]) if out else 0.0,
        "catastrophe": False,
        "success": bool(out.truncated and state.times_robbed[b] == 0) if out else False,
        "robbed": bool(out.was_robbed[b]) if out else False,
        "helped": bool(out.was_helped[b]) if out else False,
        "thanked": False,
        "hit": 0,
        "hits_dealt": int(out.hits_dealt[b]) if out else 0,
        "health": rules.max_health,
        "money": float(state.bystander_money[b]),
    }


# --- observation and rendering ---------------------------------------------------------------------
def observe(state: WorldState, rules: Rules, kind: str, index: int) -> np.ndarray:
    """The ``(H, W, 8)`` uint8 view of agent ``index`` of ``kind`` ("learner" or "bystander").

    Planes (see ``CHANNELS``): walls; self; live learners other than self; bystanders other than self;
    grudge (for a learner: bystanders holding a grudge against it, 85 per robbery; for a bystander:
    learners it holds a grudge against); hunting (for a learner: bystanders entitled to chase it now
    under the scripted rule of ``hunting``; for a
    bystander: learners anyone holds a grudge against); own health as a constant plane; full wallets.
    """
    obs = np.zeros((HEIGHT, WIDTH, len(CHANNELS)), dtype=np.uint8)
    obs[..., 0] = state.walls * 255
    lp, bp = state.learner_pos, state.bystander_pos
    others = state.alive.copy()
    bys = np.ones(rules.num_bystanders, dtype=bool)
    if kind == "learner":
        others[index] = False
        obs[lp[index, 0], lp[index, 1], 1] = 255
        obs[bp[:, 0], bp[:, 1], 4] = np.minimum(85 * state.grudge[:, index], 255)
        chasing = hunting(state, rules)[:, index]
        obs[bp[chasing, 0], bp[chasing, 1], 5] = 255
        obs[..., 6] = 255 * max(int(state.health[index]), 0) // rules.max_health
    else:
        bys[index] = False
        obs[bp[index, 0], bp[index, 1], 1] = 255
        live = state.alive
        obs[lp[live, 0], lp[live, 1], 4] = np.minimum(85 * state.grudge[index, live], 255)
        wanted = live & (state.grudge > 0).any(axis=0)
        obs[lp[wanted, 0], lp[wanted, 1], 5] = 255
        obs[..., 6] = 255  # bystanders cannot be hurt
    obs[lp[others, 0], lp[others, 1], 2] = 255
    obs[bp[bys, 0], bp[bys, 1], 3] = 255
    full = state.wallet_timer == 0
    obs[bp[full, 0], bp[full, 1], 7] = 255
    return obs


LEARNER_COLOURS = np.array([(60, 120, 255), (0, 220, 220), (190, 90, 255), (240, 240, 240)], dtype=np.float64)


def render_rgb(state: WorldState, rules: Rules) -> np.ndarray:
    """An RGB frame: grey walls; learners blue/cyan/violet/white, dimmer as health drops; bystanders
    green when calm, orange while holding a grudge, red while chasing; a yellow dot is a full wallet."""
    grid = np.full((HEIGHT, WIDTH, 3), 30, dtype=np.uint8)
    grid[state.walls] = (130, 130, 130)
    for i in np.flatnonzero(state.alive):
        shade = 0.4 + 0.6 * state.health[i] / rules.max_health
        grid[tuple(state.learner_pos[i])] = (LEARNER_COLOURS[i] * shade).astype(np.uint8)
    chasing = hunting(state, rules).any(axis=1)
    angry = (state.grudge > 0).any(axis=1)
    for b in range(rules.num_bystanders):
        colour = (230, 40, 40) if chasing[b] else (255, 150, 0) if angry[b] else (40, 190, 70)
        grid[tuple(state.bystander_pos[b])] = colour
    frame = np.repeat(np.repeat(grid, RENDER_TILE, axis=0), RENDER_TILE, axis=1)
    frame[RENDER_TILE - 1 :: RENDER_TILE, :] = 0  # grid lines
    frame[:, RENDER_TILE - 1 :: RENDER_TILE] = 0
    lo, hi = RENDER_TILE // 2 - 2, RENDER_TILE // 2 + 2
    for b in np.flatnonzero(state.wallet_timer == 0):
        r, c = state.bystander_pos[b] * RENDER_TILE
        frame[r + lo : r + hi, c + lo : c + hi] = (255, 230, 0)
    return frame
