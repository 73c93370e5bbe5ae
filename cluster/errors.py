"""What goes wrong with a cluster file, whichever part of cluster/ finds it."""


class ConfigError(ValueError):
    """`cluster.yaml` is missing, malformed, or names an impossible topology."""
