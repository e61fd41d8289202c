"""The HTTP control API of OBSERVE.md: health, metrics, stats, rules, reset, messages."""
