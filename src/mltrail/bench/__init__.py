"""``mltrail bench``: what tracking costs, measured on this machine (the paper's Tables 2-7).

``matrix`` runs the cells (task x condition x repetition, a fresh process each, resumable),
``paper_style`` is the paper's inline way of tracking, ``tool_runtime`` reads what MLflow and
W&B recorded, ``report`` renders Markdown, CSV and charts from the stored results.
"""
