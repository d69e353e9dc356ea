"""Measurement, kept out of the core packages: benchmarks against baselines run side by side
(`pipeline bench functions|system`), the soak under injected faults (`pipeline soak`), the bare
Celery app the overhead is measured against, the sample media, and the doc sections the figures
are written into."""

# The parts of `pipeline bench system`, in the order they run: named here, where `--help` can read
# them without importing what measures them.
SYSTEM_PARTS = (
    "overhead",
    "usage",
    "flows",
    "backfill",
    "embedded",
    "s3",
    "cold-start",
    "throughput",
    "ingest",
    "failover",
    "ledger",
)
