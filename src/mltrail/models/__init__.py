"""Models: the text pipeline (scikit-learn) and the CIFAR-10 CNNs (PyTorch)."""
