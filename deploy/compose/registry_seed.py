"""registry-seed (compose.yaml): on a registry where ``models:/NAME@ALIAS`` names nothing yet,
register the model folder FOLDER (the image's own text model) as a new version of NAME and
give it ALIAS, so that the replicas, which load the alias at start, have a model to serve
until `mltrail promote` moves the alias. An alias that already names a version is left alone:
the one-shot runs at every `up`, and a promoted model must stay promoted.

    python registry_seed.py FOLDER NAME ALIAS      (MLFLOW_TRACKING_URI names the server)

The version is registered as `mltrail promote` leaves one: the folder is the run's
``mltrail-model`` artifact, which `mltrail serve` fetches for ``models:/`` sources.
"""

from __future__ import annotations

import sys

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

EXPERIMENT = "registry-seed"


def current_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ALIAS names, or None when the model or the alias does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def seed(folder: str, name: str, alias: str) -> str:
    client = MlflowClient()
    held = current_version(client, name, alias)
    if held is not None:
        return f"models:/{name}@{alias} is version {held}: left as it is"
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment = found.experiment_id if found else client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment, run_name="image-text-model").info.run_id
    client.log_artifacts(run, folder, "mltrail-model")
    client.set_terminated(run)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run}/mltrail-model", run_id=run)
    client.set_registered_model_alias(name, alias, version.version)
    return f"registered {folder} as models:/{name}/{version.version}, now @{alias}"


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    print(seed(*sys.argv[1:4]), flush=True)
