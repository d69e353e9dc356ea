"""Event-driven media processing: bucket uploads trigger functions through a queue."""

__version__ = "0.1.0"
