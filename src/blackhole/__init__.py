"""Blackhole: an SMTP server that accepts mail and delivers none of it."""

__version__ = "3.0.0.dev0"
