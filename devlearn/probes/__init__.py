"""Supervised diagnostics of the agent's network, used by bench/ and tests/ only (never by training).

``recall`` and ``inbox`` train the developmental network's memory with a loss that is told the answer:
an upper bound for what reinforcement learning could reach, reported apart from it. ``world_model``
holds what both share. They sit at the app's level: they build agents, and nothing imports them.
"""
