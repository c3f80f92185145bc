"""The model, env-agnostic torch with no Hydra: ``tokenize`` (spaces -> tokens), ``context`` (the one builder of
what the core sees), ``core`` (causal transformer), ``world_model`` (what an action leads to)."""
