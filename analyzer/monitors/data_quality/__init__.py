"""The data-quality monitor: feature profiles, SageMaker's six checks, drift (pure, no I/O)."""
