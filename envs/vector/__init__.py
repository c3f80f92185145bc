"""What every batched env shares: ``make_vector_env`` (``make.py``), the numpy twin base (``batched.py``),
the PettingZoo parallel vector env (``parallel.py``) and episode accounting (``episodes.py``)."""
