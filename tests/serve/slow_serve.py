"""``python tests/serve/slow_serve.py serve --settings FILE``: the real ``mltrail serve``, except
that the model whose version is ``$MLTRAIL_TEST_SLOW_VERSION`` takes
``$MLTRAIL_TEST_SLOW_MS`` longer per call: a new model version made slower, for the temporal
audit's end-to-end tests (a real model cannot be made reliably slower on a shared machine)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import mltrail.serve.app
import mltrail.serve.reload
from mltrail.cli import main
from mltrail.models import loading

ORIGINAL = loading.load


def slow_load(source: str, kind: str) -> loading.LoadedModel:
    model = ORIGINAL(source, kind)
    if model.version != os.environ.get("MLTRAIL_TEST_SLOW_VERSION"):
        return model
    delay = float(os.environ.get("MLTRAIL_TEST_SLOW_MS", "5")) / 1000
    predict = model.predict

    def slowed(inputs: Any) -> Any:
        time.sleep(delay)
        return predict(inputs)

    return dataclasses.replace(model, predict=slowed)


mltrail.serve.app.load = slow_load  # type: ignore[attr-defined]
mltrail.serve.reload.load = slow_load  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
