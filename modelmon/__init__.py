"""modelmon: a self-hosted model monitor in SageMaker Model Monitor's formats."""

__version__ = "0.1.0"
