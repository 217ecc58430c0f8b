"""What the data stages share: fetching a source with the project's settings, provenance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mltrail.config import DataSource, Params
from mltrail.data.sources import FetchedFile, fetch
from mltrail.settings import Holds

log = logging.getLogger(__name__)


def fetch_source(
    params: Params, source: DataSource, download_dir: Path, progress: bool
) -> FetchedFile:
    fetched = fetch(
        source, download_dir, params.data.mirror_dir(), params.data.download_timeout_s, progress
    )
    log.info("data: %s (%s, sha256 %s)", fetched.path, fetched.origin, fetched.sha256[:12])
    return fetched


def provenance(source: FetchedFile, section: BaseModel) -> dict[str, Any]:
    """The profile entries saying what produced a prepared dataset.

    The file's name, not its path, and the params without the folders they name (params
    hold absolute paths once loaded: mltrail.paths): the same data prepared in two clones or
    on two machines gives equal bytes. The content is identified by the sha256s.
    """
    recorded = section.model_dump(mode="json", exclude=locations(section))
    return {
        "source": {"file": source.path.name, "sha256": source.sha256, "verified": source.verified},
        "params": recorded,
    }


def locations(model: BaseModel) -> dict[str, Any]:
    """The fields of ``model`` (nested ones too) declared to hold a path (mltrail.settings
    ``Holds``): where files are, not what they hold. A ``model_dump`` exclude."""
    found: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            if inner := locations(value):
                found[name] = inner
        elif Holds.of(field) is not None:
            found[name] = True
    return found
