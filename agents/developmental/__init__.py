"""The developmental agent: ``agent`` (the loop: collect, update, checkpoint), ``net`` (core, heads, ``decide``),
``ppo`` (GAE and the clipped loss), ``shield`` (the learned shield and its honest measurement)."""
