"""What the data stages share: fetching a source with the project's settings, provenance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mltrail.config import DataSource, Params
from mltrail.data.sources import FetchedFile, fetch

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

    The file's name, not its path: the same data prepared on two machines gives equal bytes.
    """
    return {
        "source": {"file": source.path.name, "sha256": source.sha256, "verified": source.verified},
        "params": section.model_dump(mode="json"),
    }
