"""The text model: TF-IDF + logistic regression as one scikit-learn pipeline.

Stored as arrays, not as a pickle: ``model.npz`` (loaded with ``allow_pickle=False``) holds the
vocabulary, the IDF weights, the coefficients and the vectorizer's settings as JSON. Loading it
can run no code, and it is fast: skops, the other safe option, took 5 s to import and 6 s to
write a 30,000-term vocabulary, longer than the training it stores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mltrail.config import TrainTextParams
from mltrail.errors import MltrailError

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "mltrail.text-model/1"
_VECTORIZER_KEYS = (
    "lowercase",
    "strip_accents",
    "token_pattern",
    "ngram_range",
    "analyzer",
    "stop_words",
    "binary",
    "norm",
    "use_idf",
    "smooth_idf",
    "sublinear_tf",
)


@dataclass(frozen=True)
class Timed:
    predicted: NDArray[np.int64]
    train_s: float
    predict_s: float


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


def fit_timed(model: Pipeline, train: pd.DataFrame, test: pd.DataFrame) -> Timed:
    """Fit ``model`` on ``train`` and predict ``test`` (columns ``text``, ``label``), each
    timed. On one BLAS thread: the solver's BLAS calls are too small to gain from more, and
    OpenBLAS's spinning workers made fit 40% slower on 2 cores (0.9 s vs 1.3 s for 5,000 IMDB
    rows), and much slower still beside any other busy process."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        model.fit(train["text"], train["label"])
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        predicted = model.predict(test["text"])
        predict_s = time.perf_counter() - start
    return Timed(predicted, train_s, predict_s)


def _json_bytes(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def save_text_model(model: Pipeline, path: Path) -> None:
    vectorizer: TfidfVectorizer = model.named_steps["tfidf"]
    classifier: LogisticRegression = model.named_steps["clf"]
    settings = {k: vectorizer.get_params()[k] for k in _VECTORIZER_KEYS}
    if not isinstance(settings["analyzer"], str) or vectorizer.tokenizer or vectorizer.preprocessor:
        raise MltrailError("a text model with custom Python callables cannot be stored as arrays")
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    config = {"format": FORMAT, "vectorizer": settings, "dtype": np.dtype(vectorizer.dtype).name}
    with path.open("wb") as f:
        np.savez(
            f,
            config=_json_bytes(config),
            vocabulary=_json_bytes(terms),
            idf=vectorizer.idf_,
            coef=classifier.coef_,
            intercept=classifier.intercept_,
            classes=classifier.classes_,
        )


def load_text_model(path: Path) -> Pipeline:
    """Rebuild the pipeline from ``path``; refuses anything but this format (no code runs)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            config = json.loads(z["config"].tobytes())
            terms = json.loads(z["vocabulary"].tobytes())
            idf, coef, intercept, classes = z["idf"], z["coef"], z["intercept"], z["classes"]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise MltrailError(
            f"{path} is not an mltrail text model ({type(exc).__name__}: {exc})",
            hint="retrain it (dvc repro) or check the path",
        ) from None
    if config.get("format") != FORMAT:
        raise MltrailError(f"{path} has format {config.get('format')!r}, expected {FORMAT!r}")
    settings = dict(config["vectorizer"])
    settings["ngram_range"] = tuple(settings["ngram_range"])
    vectorizer = TfidfVectorizer(
        vocabulary={term: i for i, term in enumerate(terms)},
        dtype=np.dtype(config["dtype"]).type,
        **settings,
    )
    vectorizer._validate_vocabulary()  # sets vocabulary_ from the fixed vocabulary
    vectorizer.idf_ = idf
    classifier = LogisticRegression()
    classifier.coef_, classifier.intercept_, classifier.classes_ = coef, intercept, classes
    classifier.n_features_in_ = coef.shape[1]
    return Pipeline([("tfidf", vectorizer), ("clf", classifier)])


class TextScorer:
    """The pipeline's ``predict_proba`` for a few documents at a time, without scikit-learn's
    per-call overhead (input validation, sparse matrix assembly: ~0.3 ms for one document,
    most of a served request). Same analyzer, vocabulary, IDF, normalisation and coefficients,
    so the same probabilities (tests compare them); the tokens of each document come out
    too, for the serving profile (length, out-of-vocabulary rate) at no extra cost.

    The classifier is read as mltrail trains it: LogisticRegression with its default solver,
    so a sigmoid for two classes and a softmax (multinomial) for more.
    """

    def __init__(self, model: Pipeline, projection: np.ndarray | None = None) -> None:
        """``projection``: vocabulary x k directions (``mltrail.models.reference``); each
        text's normalised TF-IDF vector projected on them comes out with its counts."""
        vectorizer: TfidfVectorizer = model.named_steps["tfidf"]
        classifier: LogisticRegression = model.named_steps["clf"]
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64) if vectorizer.use_idf else None
        self.binary = bool(vectorizer.binary)
        self.sublinear = bool(vectorizer.sublinear_tf)
        self.norm = vectorizer.norm
        self.coef_t = np.ascontiguousarray(classifier.coef_.T, dtype=np.float64)
        self.intercept = np.asarray(classifier.intercept_, dtype=np.float64)
        self.projection = (
            None if projection is None else np.ascontiguousarray(projection, dtype=np.float64)
        )
        self.terms: list[str] | None = None  # index -> term, built on the first explanation

    def score(
        self, texts: list[str]
    ) -> tuple[np.ndarray, list[tuple[int, int, tuple[float, ...]]]]:
        """Class probabilities (one row per text) and, per text, (tokens, known tokens, its
        projection: empty without one)."""
        logits = np.empty((len(texts), self.coef_t.shape[1]))
        counts = []
        k = 0 if self.projection is None else self.projection.shape[1]
        for row, text in enumerate(texts):
            tokens = self.analyze(text)
            tf: dict[int, int] = {}
            for token in tokens:
                index = self.vocabulary.get(token)
                if index is not None:
                    tf[index] = tf.get(index, 0) + 1
            known = sum(tf.values())
            if not tf:
                counts.append((len(tokens), known, (0.0,) * k))
                logits[row] = self.intercept
                continue
            indices, values = self._weights(tf)
            projected = (
                ()
                if self.projection is None
                else tuple((values @ self.projection[indices]).tolist())
            )
            counts.append((len(tokens), known, projected))
            logits[row] = values @ self.coef_t[indices] + self.intercept
        return self._probabilities(logits), counts

    def _weights(self, tf: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The document's TF-IDF vector (its nonzero indices and values), as the vectorizer."""
        indices = np.fromiter(tf.keys(), dtype=np.intp, count=len(tf))
        values = np.fromiter(tf.values(), dtype=np.float64, count=len(tf))
        if self.binary:
            values[:] = 1.0
        elif self.sublinear:
            values = np.log(values) + 1.0
        if self.idf is not None:
            values *= self.idf[indices]
        if self.norm == "l2":
            values /= np.sqrt(values @ values)
        elif self.norm == "l1":
            values /= np.abs(values).sum()
        return indices, values

    @staticmethod
    def _probabilities(logits: np.ndarray) -> np.ndarray:
        if logits.shape[1] == 1:  # two classes: sigmoid of the one decision
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return probs

    def explain(self, text: str, label: int, top: int = 10) -> list[dict[str, float | str]]:
        """The terms of ``text`` that pushed the decision most towards class ``label``: each
        term's TF-IDF weight times its coefficient (its exact share of the logit, since the
        model is linear), largest first. For two classes the one decision is for class 1, so
        a term's push towards class 0 is minus its contribution."""
        if self.terms is None:
            terms = [""] * len(self.vocabulary)
            for term, position in self.vocabulary.items():
                terms[position] = term
            self.terms = terms
        tf: dict[int, int] = {}
        for token in self.analyze(text):
            found = self.vocabulary.get(token)
            if found is not None:
                tf[found] = tf.get(found, 0) + 1
        if not tf:
            return []
        indices, values = self._weights(tf)
        if self.coef_t.shape[1] == 1:
            sign = 1.0 if label == 1 else -1.0
            contribution = sign * values * self.coef_t[indices, 0]
        else:
            contribution = values * self.coef_t[indices, label]
        order = np.argsort(-contribution)[:top]
        return [{"term": self.terms[indices[i]], "weight": float(contribution[i])} for i in order]
