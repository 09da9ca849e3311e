"""What the analyzer keeps: the SQLite store, the baseline files read, the report files written."""
