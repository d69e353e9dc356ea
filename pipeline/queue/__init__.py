"""Everything that knows Celery lives in this package."""
