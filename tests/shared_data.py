"""Where the project's reference data lives: ``shared/`` beside the checkout (CI lays a copy
there), else the workplace's ``/work/shared``."""

from pathlib import Path


def _shared() -> Path:
    beside = Path(__file__).resolve().parents[2] / "shared"
    return beside if (beside / "data").is_dir() else Path("/work/shared")


SHARED = _shared()
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
