"""The text model: TF-IDF + logistic regression as one scikit-learn pipeline, stored with skops.

skops stores the pipeline without pickle; loading admits only the types listed here, so a
tampered model file is refused instead of executed.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mltrail.config import TrainTextParams
from mltrail.errors import MltrailError


def build_text_pipeline(params: TrainTextParams) -> Pipeline:
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    max_features=params.max_features,
                    ngram_range=(1, params.ngram_max),
                    min_df=params.min_df,
                    sublinear_tf=params.sublinear_tf,
                ),
            ),
            (
                "clf",
                LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=params.seed),
            ),
        ]
    )


def trusted_types() -> list[str]:
    """The types a text model file may contain (beyond skops' built-in safe set)."""
    return [
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.pipeline.Pipeline",
        "numpy.float32",
        "numpy.float64",
        "numpy.int64",
        "numpy.dtype",
        "builtins.getattr",
    ]


def save_text_model(model: Pipeline, path: Path) -> None:
    import skops.io as sio

    sio.dump(model, path)


def load_text_model(path: Path) -> Pipeline:
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(file=path)) - set(trusted_types())
    if untrusted:
        raise MltrailError(
            f"{path} holds types a text model never contains: {sorted(untrusted)}",
            hint="the file is not an mltrail text model, or it was tampered with",
        )
    model: Pipeline = sio.load(path, trusted=trusted_types())
    return model
