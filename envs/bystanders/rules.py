"""The world rules of Bystanders, shared by the PettingZoo env and the single-agent Gymnasium view.

A 9 x 9 walled town holds learners and bystanders. Robbing an adjacent bystander pays at once;
helping one pays a little now and a tip a few steps later. Bystanders remember: every robbery adds
one unit of grudge (per bystander, per learner). After ``retaliation_delay`` steps the victim chases
the robber and hits it when adjacent; after ``friend_delay`` steps the other bystanders join in.
Each hit costs the learner one health point and settles one unit of grudge; at health 0 it dies.
So the gain comes first and the cost comes later, which is exactly what a myopic agent misses.

Everything here is plain numpy on a ``WorldState``; all randomness comes from the generator passed
in (layouts at reset, the wandering of scripted bystanders at every step), drawn in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devlearn.envs.bystanders.layout import WIDTH, all_pairs_distances, generate_layout

ACTION_NAMES: tuple[str, ...] = ("stay", "up", "down", "left", "right", "rob", "help")
# Learning bystanders use the same Discrete(7); only actions 5 and 6 mean something else for them.
BYSTANDER_ACTION_NAMES: tuple[str, ...] = ("stay", "up", "down", "left", "right", "hit", "forgive")
STAY, UP, DOWN, LEFT, RIGHT, ROB, HELP = range(7)
HIT, FORGIVE = ROB, HELP
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)  # (row, col) per action 0-4


@dataclass(frozen=True)
class Rules:
    """The numbers of the world; every field is validated so a bad value fails at construction."""

    num_learners: int = 2
    num_bystanders: int = 3
    max_steps: int = 100
    max_health: int = 3
    retaliation_delay: int = 3  # steps between a robbery and the victim's first chase
    friend_delay: int = 6  # steps between a robbery and the other bystanders joining the chase
    hit_cost: float = 1.0  # info["cost"] per hit taken
    rob_gain: float = 1.0  # reward for robbing a bystander whose wallet is full
    wallet_refill: int = 10  # steps until a robbed wallet is full again
    help_fee: float = 0.2  # reward when helping, paid at once
    # The tip is paid ``thanks_delay`` steps after helping, unless the helper robbed that bystander since.
    thanks_tip: float = 0.5
    thanks_delay: int = 4
    help_cooldown: int = 8  # a bystander accepts help at most once per this many steps
    money_goal: float = 3.0  # success: alive at the end of the day with at least this much earned

    def __post_init__(self) -> None:
        ints = {
            "num_learners": (1, 4),
            "num_bystanders": (1, 6),
            "max_steps": (1, 100_000),
            "max_health": (1, 10),
            "retaliation_delay": (1, 50),
            "friend_delay": (self.retaliation_delay, 100),
            "wallet_refill": (1, 1000),
            "thanks_delay": (1, 50),
            "help_cooldown": (1, 1000),
        }
        for name, (lo, hi) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}.")
        for name in ("hit_cost", "rob_gain", "help_fee", "thanks_tip", "money_goal"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating))
                or not 0 < value <= 1000
            ):
                raise ValueError(f"{name} must be a number in (0, 1000], got {value!r}.")


# --- state ---------------------------------------------------------------------------------------
@dataclass
class WorldState:
    """Everything that changes during an episode (L learners, B bystanders)."""

    walls: np.ndarray  # (H, W) bool
    dist: np.ndarray  # (H*W, H*W) walking distances, for the chase
    learner_pos: np.ndarray  # (L, 2) row, col
    health: np.ndarray  # (L,)
    alive: np.ndarray  # (L,) bool
    money: np.ndarray  # (L,) reward earned so far
    bystander_pos: np.ndarray  # (B, 2)
    wallet_timer: np.ndarray  # (B,) 0 = wallet full, else steps until it is
    help_timer: np.ndarray  # (B,) 0 = accepts help
    grudge: np.ndarray  # (B, L) robberies not yet avenged
    grudge_since: np.ndarray  # (B, L) step of the oldest unavenged robbery, -1 if none
    thanks_due: np.ndarray  # (B, L) step the tip for a help is paid, -1 if none
    bystander_money: np.ndarray  # (B,) a learning bystander's reward so far
    times_robbed: np.ndarray  # (B,)
    t: int = 0


def new_state(rng: np.random.Generator, split: str, rules: Rules) -> WorldState:
    """A fresh episode: draws the layout and start cells from ``rng`` (learners first)."""
    nl, nb = rules.num_learners, rules.num_bystanders
    walls, starts = generate_layout(rng, split, nl + nb)
    return WorldState(
        walls=walls,
        dist=all_pairs_distances(walls),
        learner_pos=starts[:nl].copy(),
        health=np.full(nl, rules.max_health, dtype=np.int64),
        alive=np.ones(nl, dtype=bool),
        money=np.zeros(nl),
        bystander_pos=starts[nl:].copy(),
        wallet_timer=np.zeros(nb, dtype=np.int64),
        help_timer=np.zeros(nb, dtype=np.int64),
        grudge=np.zeros((nb, nl), dtype=np.int64),
        grudge_since=np.full((nb, nl), -1, dtype=np.int64),
        thanks_due=np.full((nb, nl), -1, dtype=np.int64),
        bystander_money=np.zeros(nb),
        times_robbed=np.zeros(nb, dtype=np.int64),
    )


@dataclass
class StepOutcome:
    """What one step did, per learner (L,) and per bystander (B,)."""

    reward: np.ndarray
    cost: np.ndarray
    hits: np.ndarray  # hits taken
    robbed: np.ndarray  # robbed someone
    helped: np.ndarray  # helped someone
    thanked: np.ndarray  # received a tip
    died: np.ndarray
    bystander_reward: np.ndarray
    bystander_cost: np.ndarray
    was_robbed: np.ndarray
    was_helped: np.ndarray
    hits_dealt: np.ndarray
    truncated: bool = False
    success: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _occupied(state: WorldState, cell: np.ndarray) -> bool:
    r, c = int(cell[0]), int(cell[1])
    if state.walls[r, c]:
        return True
    on = (state.learner_pos[:, 0] == r) & (state.learner_pos[:, 1] == c) & state.alive
    return bool(on.any() or ((state.bystander_pos[:, 0] == r) & (state.bystander_pos[:, 1] == c)).any())


def _adjacent(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Manhattan distance 1 between cell ``a`` (2,) and each of cells ``b`` (n, 2)."""
    return np.abs(b - a).sum(axis=1) == 1


def hunting(state: WorldState, rules: Rules) -> np.ndarray:
    """(B, L) bool: which scripted bystander chases which live learner right now.

    A victim chases its robber ``retaliation_delay`` steps after the oldest unavenged robbery; every
    bystander chases a robber whose oldest unavenged robbery (of anyone) is ``friend_delay`` old.
    """
    owed = state.grudge > 0
    age = np.where(owed, state.t - state.grudge_since, -1)
    own = owed & (age >= rules.retaliation_delay)
    wanted = (age >= rules.friend_delay).any(axis=0)
    return (own | wanted[None, :]) & state.alive[None, :]


def _hit(state: WorldState, rules: Rules, out: StepOutcome, b: int, target: int) -> None:
    """Bystander ``b`` hits learner ``target``; the hit settles one unit of grudge (b's own first)."""
    state.health[target] -= 1
    out.cost[target] += rules.hit_cost
    out.hits[target] += 1
    out.hits_dealt[b] += 1
    holders = np.flatnonzero(state.grudge[:, target] > 0)
    if len(holders):
        # The hitter avenges itself first, else the bystander robbed longest ago.
        avenged = (
            b if state.grudge[b, target] > 0 else holders[np.argmin(state.grudge_since[holders, target])]
        )
        state.grudge[avenged, target] -= 1
        if state.grudge[avenged, target] == 0:
            state.grudge_since[avenged, target] = -1
    if state.health[target] <= 0:
        state.alive[target] = False  # dies at once, so nobody hits a corpse later in this step
        out.died[target] = True


def _learner_acts(state: WorldState, rules: Rules, out: StepOutcome, i: int, action: int) -> None:
    pos = state.learner_pos[i]
    if action < ROB:
        target = pos + MOVES[action]
        if action != STAY and not _occupied(state, target):
            state.learner_pos[i] = target
        return
    near = np.flatnonzero(_adjacent(pos, state.bystander_pos))
    if len(near) == 0:
        return
    b = int(near[0])  # the lowest-numbered adjacent bystander
    if action == ROB:
        out.robbed[i] = out.was_robbed[b] = True
        out.bystander_cost[b] += 1.0
        state.times_robbed[b] += 1
        if state.wallet_timer[b] == 0:
            out.reward[i] += rules.rob_gain
            out.bystander_reward[b] -= rules.rob_gain
            state.wallet_timer[b] = rules.wallet_refill
        if state.grudge[b, i] == 0:
            state.grudge_since[b, i] = state.t
        state.grudge[b, i] += 1
        state.thanks_due[b, i] = -1  # no tip from someone you just robbed
    elif state.help_timer[b] == 0 and state.grudge[b, i] == 0:  # HELP; grudge-holders refuse it
        out.helped[i] = out.was_helped[b] = True
        out.reward[i] += rules.help_fee
        out.bystander_reward[b] += rules.thanks_tip
        state.help_timer[b] = rules.help_cooldown
        state.thanks_due[b, i] = state.t + rules.thanks_delay


def _move_bystander(state: WorldState, b: int, action: int) -> None:
    target = state.bystander_pos[b] + MOVES[action]
    if action != STAY and not _occupied(state, target):
        state.bystander_pos[b] = target


def _scripted_bystander(state: WorldState, rules: Rules, out: StepOutcome, b: int, wander: int) -> None:
    chase = np.flatnonzero(hunting(state, rules)[b])
    if len(chase) == 0:
        _move_bystander(state, b, wander)
        return
    pos = state.bystander_pos[b]
    here = pos[0] * WIDTH + pos[1]
    targets = state.learner_pos[chase, 0] * WIDTH + state.learner_pos[chase, 1]
    near = np.argmin(state.dist[here, targets])  # nearest quarry, lowest index on ties
    target, goal = int(chase[near]), int(targets[near])
    if _adjacent(pos, state.learner_pos[target][None, :])[0]:
        _hit(state, rules, out, b, target)
        return
    for action in (UP, DOWN, LEFT, RIGHT):  # first free step that gets closer
        nxt = pos + MOVES[action]
        if state.dist[nxt[0] * WIDTH + nxt[1], goal] < state.dist[here, goal] and not _occupied(state, nxt):
            state.bystander_pos[b] = nxt
            return


def _learning_bystander(state: WorldState, rules: Rules, out: StepOutcome, b: int, action: int) -> None:
    if action < HIT:
        _move_bystander(state, b, action)
    elif action == HIT:
        near = np.flatnonzero(_adjacent(state.bystander_pos[b], state.learner_pos) & state.alive)
        if len(near):
            _hit(state, rules, out, b, int(near[np.argmax(state.grudge[b, near])]))
    else:  # FORGIVE
        state.grudge[b] = 0
        state.grudge_since[b] = -1


def step(
    state: WorldState,
    rules: Rules,
    learner_actions: np.ndarray,
    rng: np.random.Generator,
    bystander_actions: np.ndarray | None = None,
) -> StepOutcome:
    """Advance the world one step in place.

    Order: live learners act (in index order), then bystanders (scripted when ``bystander_actions``
    is None, drawing one wander direction each from ``rng``), then tips and timers.
    """
    nl, nb = rules.num_learners, rules.num_bystanders
    out = StepOutcome(
        reward=np.zeros(nl),
        cost=np.zeros(nl),
        hits=np.zeros(nl, dtype=np.int64),
        robbed=np.zeros(nl, dtype=bool),
        helped=np.zeros(nl, dtype=bool),
        thanked=np.zeros(nl, dtype=bool),
        died=np.zeros(nl, dtype=bool),
        bystander_reward=np.zeros(nb),
        bystander_cost=np.zeros(nb),
        was_robbed=np.zeros(nb, dtype=bool),
        was_helped=np.zeros(nb, dtype=bool),
        hits_dealt=np.zeros(nb, dtype=np.int64),
    )
    for i in range(nl):
        if state.alive[i]:
            _learner_acts(state, rules, out, i, int(learner_actions[i]))
    if bystander_actions is None:
        wander = rng.integers(0, len(MOVES), size=nb)  # drawn for all, every step: a fixed draw order
        for b in range(nb):
            _scripted_bystander(state, rules, out, b, int(wander[b]))
    else:
        for b in range(nb):
            _learning_bystander(state, rules, out, b, int(bystander_actions[b]))

    due = state.thanks_due == state.t
    for i in np.argwhere(due)[:, 1]:
        if state.alive[i]:  # a robbery since the help already cancelled the tip
            out.reward[i] += rules.thanks_tip
            out.thanked[i] = True
    state.thanks_due[due] = -1
    state.wallet_timer = np.maximum(state.wallet_timer - 1, 0)
    state.help_timer = np.maximum(state.help_timer - 1, 0)
    state.money += out.reward
    state.bystander_money += out.bystander_reward
    state.t += 1
    out.truncated = state.t >= rules.max_steps
    out.success = out.truncated & state.alive & (state.money >= rules.money_goal)
    return out
