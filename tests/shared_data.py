"""Where the project's reference data lives: ``tests/reference/`` inside the repository, so a
plain clone runs the tests and benchmarks (nothing is read from outside the checkout).

``SHARED`` keeps the layout the data had before it moved in: ``SHARED / "data"`` is the
synthetic tables (``DATA``), ``SHARED / "sagemaker-examples"`` AWS's files (``EXAMPLES``).
"""

from pathlib import Path

SHARED = Path(__file__).resolve().parent / "reference"
DATA = SHARED / "data"
EXAMPLES = SHARED / "sagemaker-examples"
# The feature columns a model endpoint receives (the first 11 of the reference tables, as in
# requests_nodrift.csv); `score` and `label` are the prediction and the late ground truth.
REQUEST_COLUMNS = [
    "age",
    "income",
    "balance",
    "tenure_months",
    "num_products",
    "credit_score",
    "utilization",
    "state",
    "plan",
    "channel",
    "gender",
]
