"""A modality-agnostic PyTorch training pipeline: augment -> dataset -> model -> trainer -> train, driven by config.yaml

Modules:

- `mlpipe.loggers`: Serves 03_trainer and 04_train: what a run records besides metrics.csv — its data info for `predict`, TensorBoard and MLflow curves, and a notification when it ends or fails."""

__version__ = "0.0.1"
