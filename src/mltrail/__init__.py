"""mltrail: an end-to-end MLOps pipeline with a trail from git commit to production metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.errors import DataError, MltrailError, ParamsError

if TYPE_CHECKING:
    from mltrail.config import Params, load_params

__version__ = "0.1.0"

__all__ = ["DataError", "MltrailError", "Params", "ParamsError", "__version__", "load_params"]


def __getattr__(name: str) -> Any:
    """``Params`` and ``load_params`` on first use: they import pydantic, which every
    ``import mltrail.<module>`` (and ``mltrail --help``) would otherwise pay for."""
    if name in ("Params", "load_params"):
        from mltrail import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
