"""Tracking (layer 4): what produced a model, and where its runs are recorded.

``run`` is the tracked run a training stage opens: it journals params, metrics and the model
locally (``journal``) while ``export`` replays the journal into the trackers the spec names
(``base`` is their protocol, ``registry`` finds them by name or URI: ``mlflow_backend``,
``wandb_backend``; ``none`` records nothing elsewhere). ``lineage`` measures what goes into a
model's manifest (git state, hashes, library versions) and reads a model's trail back
(``mltrail lineage``); ``server`` runs the team's MLflow server.
"""
