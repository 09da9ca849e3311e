"""One package per monitor type (data quality, model quality, later bias and attribution)."""
