"""Monitoring: what the served models did, read back from the telemetry store.

``mltrail.telemetry`` reads a window of prediction and feedback records from the local SQLite
store or the shared PostgreSQL one (the store its URI names); ``summary`` condenses a
window into what a person or an alert rule looks at: volume, class mix, confidence, latency
percentiles, input profiles, live accuracy from feedback. Drift tests against the training
data's reference profiles, thresholds, the retrain decision and the loop build on these.
"""
