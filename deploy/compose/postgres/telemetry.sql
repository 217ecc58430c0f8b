-- Run once, on the first start of the stack's PostgreSQL (an empty data volume): the
-- database the replicas write their telemetry to. MLflow's database is POSTGRES_DB (mlflow).
CREATE DATABASE telemetry;
