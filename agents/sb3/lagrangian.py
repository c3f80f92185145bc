"""PPO-Lagrangian (``agent=ppo_lagrangian``): Stable-Baselines3's PPO with a cost critic and an adaptive multiplier.

The first thing a safe-RL researcher tries (Ray, Achiam & Amodei 2019, "Benchmarking Safe Exploration in Deep
Reinforcement Learning"; OmniSafe's ``PPOLag``), on the ``info["cost"]`` every devlearn env reports. The
constrained problem ``max J_r(pi) s.t. J_c(pi) <= cost_limit`` (``J_c``: the expected cost of an episode) is
solved at the saddle point of ``J_r - lambda * (J_c - cost_limit)`` over ``lambda >= 0``:

* a cost critic ``V_c``: an MLP of the value net's shape beside it (``CostCriticPolicy``), fit to the cost returns
  after each PPO update (mean squared error, the policy's Adam, ``n_epochs`` x minibatches as PPO);
* cost advantages ``A_c``: GAE on the per-step cost (``info["step_cost"]``, ``SB3VecEnv``) with the reward's
  ``gamma`` and ``gae_lambda``; a time-limit truncation bootstraps the cost with ``V_c`` of the final observation,
  as SB3 does the reward with ``V``;
* the policy loss: SB3's clipped surrogate on the combined advantage ``(A_r - lambda * A_c) / (1 + lambda)``, with
  ``A_r`` standardised and ``A_c`` centred over the whole rollout. This is OmniSafe's form exactly (its
  ``_compute_adv_surrogate`` and its buffer's ``standardized_rew_adv`` / ``standardized_cost_adv``): the two
  advantages are combined first and clipped once. SB3's own per-minibatch normalisation is off here, since it
  would undo the ``1 / (1 + lambda)`` that keeps the step's size bounded as lambda grows;
* the multiplier: once per rollout, before the update, one projected gradient-ascent step on
  ``lambda * (J_c - cost_limit)``: ``lambda <- max(0, lambda + lagrangian_lr * (J_c - cost_limit))`` (``lagrange_step``),
  where ``J_c`` is the mean summed cost of the episodes that *finished* during the rollout (not a per-step rate);
  a rollout in which no episode finished leaves lambda where it is. OmniSafe takes this step with Adam; the plain
  step keeps ``lagrangian_lr`` readable: lambda's change per rollout per unit of cost over the budget.

What follows from OmniSafe's normalisation: ``A_r`` has unit scale whatever the rewards, ``A_c`` keeps the cost's
scale, so the cost weighs once ``lambda * std(A_c)`` nears 1, and ``1 / (1 + lambda)`` shrinks the reward's pull
before it does. On CliffEdge (falls cost 1) a slow lambda (``lagrangian_lr=0.1``) sat in between for 30k steps and
fell more than PPO; at 1.0 it fell less, and at 100k steps it had learned to stay off the cliff (3% of the last 100
episodes fell) by not walking to the goal (PPO: 15% falls, 49% success): the trade a cost limit buys.

Why not a maintained implementation: OmniSafe 0.5.0 (the latest release, 2024) requires ``safety-gymnasium``, whose
latest release (1.0.0) pins ``gymnasium==0.28.1`` (devlearn needs gymnasium>=1.1 and Stable-Baselines3>=2.5, which
needs gymnasium 1.x), ``mujoco==2.3.3`` and ``pygame==2.1.0``; OmniSafe itself pins ``pandas==2.0.3``. Read from the
wheels' Requires-Dist (``pip download --no-deps omnisafe safety-gymnasium``). Neither SB3 nor sb3-contrib has a
Lagrangian PPO.

The multiplier is a plain float attribute of the algorithm, so SB3's checkpoint stores it in its ``data`` entry (a
JSON number, which ``SB3Agent.load`` trusts) and a resumed run continues it; ``cost_limit`` and ``lagrangian_lr`` are
taken from the config on load, like the other hyperparameters (``FROM_CONFIG``).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
from stable_baselines3.common.torch_layers import create_mlp
from torch import nn

from devlearn.config import PPOLagrangianConfig

DEFAULTS = PPOLagrangianConfig()


def lagrange_step(multiplier: float, episode_cost: float, cost_limit: float, lr: float) -> float:
    """One projected gradient-ascent step of the multiplier on ``lambda * (J_c - cost_limit)``, kept >= 0."""
    return max(0.0, multiplier + lr * (episode_cost - cost_limit))


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    last_dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> np.ndarray:
    """GAE(lambda) advantages of ``(n_steps, n_envs)`` arrays, as SB3's ``RolloutBuffer`` computes them for rewards."""
    advantages = np.zeros_like(rewards, dtype=np.float32)
    running = np.zeros(rewards.shape[1], dtype=np.float32)
    for step in reversed(range(len(rewards))):
        if step == len(rewards) - 1:
            non_terminal, next_values = 1.0 - last_dones.astype(np.float32), last_values
        else:
            non_terminal, next_values = 1.0 - episode_starts[step + 1], values[step + 1]
        delta = rewards[step] + gamma * next_values * non_terminal - values[step]
        running = delta + gamma * gae_lambda * non_terminal * running
        advantages[step] = running
    return advantages


class CostRolloutSamples(NamedTuple):
    """SB3's ``RolloutBufferSamples`` plus the cost returns the cost critic is fit to."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    cost_returns: th.Tensor


class CostRolloutBuffer(RolloutBuffer):
    """SB3's rollout buffer plus each step's cost, cost value, cost advantage and cost return."""

    def reset(self) -> None:
        shape = (self.buffer_size, self.n_envs)
        self.costs = np.zeros(shape, dtype=np.float32)
        self.cost_values = np.zeros(shape, dtype=np.float32)
        self.cost_advantages = np.zeros(shape, dtype=np.float32)
        self.cost_returns = np.zeros(shape, dtype=np.float32)
        super().reset()

    def get(self, batch_size: int | None = None):
        if not self.generator_ready:  # super().get flattens its own arrays on this same first call
            self.cost_returns = self.swap_and_flatten(self.cost_returns)
        yield from super().get(batch_size)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> CostRolloutSamples:  # type: ignore[override]
        samples = super()._get_samples(batch_inds, env)
        return CostRolloutSamples(*samples, self.to_torch(self.cost_returns[batch_inds].flatten()))


class CostCriticPolicy(ActorCriticPolicy):
    """SB3's MLP actor-critic plus a cost critic: an MLP of the value net's shape on the same features."""

    def _build_mlp_extractor(self) -> None:
        super()._build_mlp_extractor()
        # Built inside SB3's _build, before it creates the optimizer: Adam and the checkpoint include it.
        arch = self.net_arch["vf"] if isinstance(self.net_arch, dict) else self.net_arch
        self.cost_value_net = nn.Sequential(*create_mlp(self.features_dim, 1, list(arch), self.activation_fn))
        if self.ortho_init:  # SB3's gains: sqrt(2) for hidden layers, 1 for the value output
            self.cost_value_net.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.cost_value_net[-1].apply(partial(self.init_weights, gain=1.0))

    def predict_cost_values(self, obs: th.Tensor) -> th.Tensor:
        """``V_c(obs)``, shape ``(batch, 1)``."""
        return self.cost_value_net(BaseModel.extract_features(self, obs, self.vf_features_extractor))


class PPOLagrangian(PPO):
    """PPO-Lagrangian on SB3's PPO; see the module docstring. ``lagrangian_multiplier`` is lambda."""

    policy_aliases = {"MlpPolicy": CostCriticPolicy}  # type: ignore[assignment]
    policy: CostCriticPolicy
    rollout_buffer: CostRolloutBuffer

    def __init__(
        self,
        *args: Any,
        cost_limit: float = DEFAULTS.cost_limit,
        lagrangian_lr: float = DEFAULTS.lagrangian_lr,
        lagrangian_init: float = DEFAULTS.lagrangian_init,
        **kwargs: Any,
    ) -> None:
        self.cost_limit = float(cost_limit)
        self.lagrangian_lr = float(lagrangian_lr)
        self.lagrangian_multiplier = float(lagrangian_init)
        self._episode_costs: list[float] = []  # the summed cost of each episode finished in this rollout
        kwargs |= {"normalize_advantage": False, "rollout_buffer_class": CostRolloutBuffer}
        super().__init__(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_episode_costs"]

    def _cost_values(self, obs: np.ndarray) -> np.ndarray:
        """``V_c`` of a batch of observations in the buffer's layout (``(batch, *obs_shape)``), as float32."""
        with th.no_grad():
            tensor = th.as_tensor(obs, device=self.device)
            return self.policy.predict_cost_values(tensor).cpu().numpy().astype(np.float32).flatten()

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        """Read each step's cost: SB3 calls this once per env step of a rollout, before it adds the step to the
        buffer at ``rollout_buffer.pos`` (and, like SB3's reward, a time-limit truncation bootstraps with ``V_c``)."""
        super()._update_info_buffer(infos, dones)
        buffer = self.rollout_buffer
        for i, info in enumerate(infos):
            cost = info["step_cost"]
            if info.get("TimeLimit.truncated") and info.get("terminal_observation") is not None:
                final = np.asarray(info["terminal_observation"]).reshape(1, *buffer.obs_shape)
                cost += self.gamma * float(self._cost_values(final)[0])
            buffer.costs[buffer.pos, i] = cost
            if "episode" in info:
                self._episode_costs.append(float(info["cost"]))

    def collect_rollouts(self, env: Any, callback: Any, rollout_buffer: Any, n_rollout_steps: int) -> bool:
        self._episode_costs = []
        if not super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps):
            return False
        self._finish_rollout(rollout_buffer)
        return True

    def _finish_rollout(self, buffer: CostRolloutBuffer) -> None:
        """Cost advantages, then lambda's step, then the combined advantage the PPO update will read."""
        n_steps, n_envs = buffer.buffer_size, buffer.n_envs
        buffer.cost_values = self._cost_values(buffer.observations.reshape(n_steps * n_envs, *buffer.obs_shape))
        buffer.cost_values = buffer.cost_values.reshape(n_steps, n_envs)
        last = self._cost_values(np.asarray(self._last_obs).reshape(n_envs, *buffer.obs_shape))
        buffer.cost_advantages = gae(
            buffer.costs, buffer.cost_values, buffer.episode_starts, last,
            np.asarray(self._last_episode_starts), self.gamma, self.gae_lambda,
        )  # fmt: skip
        buffer.cost_returns = buffer.cost_advantages + buffer.cost_values
        if self._episode_costs:
            episode_cost = float(np.mean(self._episode_costs))
            self.lagrangian_multiplier = lagrange_step(
                self.lagrangian_multiplier, episode_cost, self.cost_limit, self.lagrangian_lr
            )
            self.logger.record("train/episode_cost", episode_cost)
        self.logger.record("train/lagrangian_multiplier", self.lagrangian_multiplier)
        penalty = self.lagrangian_multiplier
        reward_adv = (buffer.advantages - buffer.advantages.mean()) / (buffer.advantages.std() + 1e-8)
        cost_adv = buffer.cost_advantages - buffer.cost_advantages.mean()
        buffer.advantages = ((reward_adv - penalty * cost_adv) / (1.0 + penalty)).astype(np.float32)

    def train(self) -> None:
        super().train()  # PPO's clipped update on the combined advantage, and the reward critic
        self._train_cost_critic()

    def _train_cost_critic(self) -> None:
        params = list(self.policy.cost_value_net.parameters())
        losses = []
        for _ in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                loss = F.mse_loss(self.policy.predict_cost_values(batch.observations).flatten(), batch.cost_returns)
                self.policy.optimizer.zero_grad()  # only the cost critic has a gradient: Adam steps only it
                loss.backward()
                th.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                self.policy.optimizer.step()
                losses.append(loss.item())
        self.logger.record("train/cost_value_loss", float(np.mean(losses)))
