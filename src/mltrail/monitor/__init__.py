"""Monitoring: what the served models did, read back from the telemetry store.

``mltrail.telemetry`` reads a window of prediction and feedback records from the local SQLite
store or the shared PostgreSQL one (the store its URI names); ``summary`` condenses a
window into what a person or an alert rule looks at: volume, class mix, confidence, latency
percentiles, input profiles, live accuracy from feedback. ``drift`` tests a window against the
model's reference (:mod:`mltrail.models.reference`), ``policy`` turns the tests, live accuracy
and latency into ok / warn / retrain, ``report`` writes what a check found, and ``run`` checks
the serving model. The loop that acts on a retrain decision is :mod:`mltrail.release.retrain`.
"""
