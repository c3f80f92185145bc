"""Stable-Baselines3 baselines behind devlearn's ``Agent`` interface: ``agent`` (PPO, RecurrentPPO) and ``vec``
(devlearn's next-step-autoreset vector envs served to SB3)."""
