"""Payload decoding: capture records and payload bodies to named columns (pure, no I/O)."""
