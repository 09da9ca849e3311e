"""The analyzer: capture files in, profiles, checks and reports out."""
