"""Measurement, kept out of the core packages: benchmarks against baselines run side by side
(`pipeline bench functions|system`), the soak under injected faults (`pipeline soak`), the bare
Celery app the overhead is measured against, the sample media, and the doc sections the figures
are written into."""
