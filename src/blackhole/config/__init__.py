"""Configuration: one frozen dataclass tree and the loaders that build it."""
