"""quadlens: read a modular-addition transformer's ReLU MLP as a quadrature scheme, with proven bounds."""

__version__ = "0.1.0"

from .certify import BoundReport, bound  # noqa: E402
from .checkpoint import CheckpointError, bundled_model_path, load_model, save_model  # noqa: E402
from .explain import Explanation, explain  # noqa: E402
from .model import ModelConfig, Transformer  # noqa: E402
from .tables import SeparableTables, separable_tables  # noqa: E402
from .task import ModularAddition  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

__all__ = ["BoundReport", "CheckpointError", "Explanation", "ModelConfig", "ModularAddition", "SeparableTables",
           "TrainConfig", "Transformer", "bound", "bundled_model_path", "explain", "load_model", "save_model",
           "separable_tables", "train"]
