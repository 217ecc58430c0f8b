"""mltrail: an end-to-end MLOps pipeline with a trail from git commit to production metrics."""

from mltrail.config import Params, load_params
from mltrail.errors import DataError, MltrailError, ParamsError

__version__ = "0.1.0"

__all__ = ["DataError", "MltrailError", "Params", "ParamsError", "__version__", "load_params"]
