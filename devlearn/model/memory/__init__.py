"""Memory for long episodes: ``ssm`` (a selective state-space layer, parallel and recurrent modes) and
``retrieval`` (a per-episode, per-env store read by top-k inner product)."""
