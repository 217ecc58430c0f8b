"""Pipeline stages: each a pure core function plus a ``run`` that does the file work.

The CLI (and through it ``dvc.yaml``) calls ``run``; tests call the core functions directly.
"""
