"""The HTTP gateway (FastAPI lives in this package only)."""
