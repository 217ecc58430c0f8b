"""Models (layer 3): what is trained, loaded and measured.

The text pipeline (scikit-learn: ``text``) and the CIFAR-10 CNNs (PyTorch: ``cnn``, ``cnn_io``,
``cnn_train``); ``metrics`` and ``explain``; ``features`` (what is measured about every input,
by the server and for the reference alike), ``reference`` (what every model carries for
monitoring) and ``loading`` (a model folder or MLflow URI, verified against its manifest, as a
predictor).
"""
