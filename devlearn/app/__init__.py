"""The application: what a user runs. Nothing in devlearn imports it (``tests/test_layers.py``).

``cli`` (the ``devlearn`` command), ``launch`` (compose and check a run before its folder exists; the
Python API ``devlearn.train``), ``checks``, ``run`` (``devlearn train``), ``spawn`` (``distributed.nproc=N``),
``resume``, ``evaluate`` / ``evaluate_run`` (episodes, tables, ``devlearn eval``), ``media`` (rollout
videos), ``progress`` (a sweep's line per job), ``report`` (``devlearn report``), ``grok`` (``devlearn grok``).
"""
