"""The one error type for configuration a user got wrong (no Hydra here: the model and envs import it)."""


class ConfigError(ValueError):
    """A configuration value or key that devlearn cannot use; the message says what is allowed."""
