"""Reading inputs: sealed capture files, training tables and ground truth."""
