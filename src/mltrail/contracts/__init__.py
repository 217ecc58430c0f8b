"""Layer 2: the contracts between stages, typed once.

What one part of mltrail writes and another reads, each defined in one module:

- :mod:`~mltrail.contracts.tasks`: the task registry (task -> server kind -> endpoint ->
  model file and flavor -> prepared-data layout), and the name of a training stage;
- :mod:`~mltrail.contracts.layout`: the files of a prepared-data folder and of a model folder;
- :mod:`~mltrail.contracts.manifest`: ``manifest.json``, the lineage record beside each model;
- :mod:`~mltrail.contracts.pointer`: ``releases/serving.json``, what the servers serve.

These modules import only :mod:`mltrail.errors`, :mod:`mltrail.fsio`, :mod:`mltrail.config`,
pydantic and the standard library, so that every layer above (data, tracking, stages,
monitor, serve, cli) can use them without pulling in another.
"""
