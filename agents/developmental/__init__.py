"""The developmental agent: ``agent`` (builds the parts and runs them: collect, update, log, checkpoint),
``collect`` (one rollout of acting), ``update`` (PPO + the world-model loss), ``intrinsic`` (intrinsic rewards
as callbacks), ``monitor`` (figures and pictures), ``policy`` (evaluation), ``net`` (core, heads, ``decide``),
``rollout`` (what acting recorded), ``ppo`` (GAE and the clipped loss), ``shield`` (the learned shield and its
honest measurement)."""
