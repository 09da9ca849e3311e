"""The analyzer's HTTP API under ``/monitor/``: status, metrics, runs, report, ground truth."""
