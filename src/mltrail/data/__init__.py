"""Datasets: where they come from (sources), how they are read (text, cifar10)."""
