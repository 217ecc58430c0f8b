"""Release (layer 6): a trained model on its way to serving, and back round the loop.

``promote`` (a model folder made the serving one: release copy, MLflow alias, pointer file),
``retrain`` (from a retrain decision to a new model serving, or to a recorded no) and
``deploy`` (a release onto a host over SSH, blue/green behind a health gate).
"""
