"""The run: ``run`` (``devlearn train``), ``evaluate`` (episodes and tables), ``checkpoint`` (atomic, weights-only),
``optim`` (the optimizer builder)."""
