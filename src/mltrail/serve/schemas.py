"""Request and response bodies of the server's API (OpenAPI at /docs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

if TYPE_CHECKING:
    from fastapi import Request
    from fastapi.responses import Response

MAX_LABEL = 2**31 - 1
"""The largest class index a label may be: what every store's INTEGER column holds (a larger
one would be refused by the store, after the request had been answered)."""


MAX_GROUP_CHARS = 64
"""The longest group name a request may give (a label such as a language, not free text)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _valid_unicode(value: str) -> str:
    """A lone surrogate (``"\\ud800"`` in the JSON) is valid JSON but not Unicode: no store
    can encode it, so it is refused here, where the client learns which input it was."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a lone surrogate ({value[exc.start]!r} at character {exc.start}), "
            "which is not valid Unicode"
        ) from None
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""A string the stores can write: every text field of a request is one."""


def _group_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("group is blank: give a group name or leave `group` out")
    return value


Group = Annotated[
    str,
    Field(min_length=1, max_length=MAX_GROUP_CHARS),
    AfterValidator(_valid_unicode),
    AfterValidator(_group_not_blank),
]
"""A group name: bounded here, as a string (its own constraint error), not as the optional."""
GROUP = TypeAdapter(Group)
"""The same checks for a group given outside a JSON body (a form field, a query parameter)."""
GROUP_DOC = """The group the input(s) belong to (e.g. a language or a region), kept with each
prediction in telemetry: the monitor measures live accuracy per group from feedback."""


class TextRequest(_Body):
    """One text (``text``) or a batch (``texts``)."""

    text: Text | None = Field(default=None, examples=["A wonderful, moving film."])
    texts: list[Text] | None = Field(default=None, min_length=1)
    probabilities: bool = False
    """Also return the probability of every class."""
    explain: bool = False
    """Also return the terms that drove each prediction (TF-IDF weight x coefficient)."""
    group: Group | None = Field(default=None, description=GROUP_DOC)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text is empty")
        return value

    @field_validator("texts")
    @classmethod
    def _none_blank(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            blank = [i for i, t in enumerate(value) if not t.strip()]
            if blank:
                raise ValueError(f"texts at positions {blank[:10]} are empty")
        return value

    def items(self) -> list[str]:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of `text` or `texts`")
        return [self.text] if self.text is not None else list(self.texts or [])


Pixel = Annotated[float, Field(ge=0, le=255)]
Image = list[list[list[Pixel]]]  # 32 x 32 x 3, values in [0, 1] or [0, 255]


class ImageRequest(_Body):
    """One image (``image``) or a batch (``images``): 32 x 32 x 3 (height, width, RGB), values
    in [0, 1] (as the model was trained) or in [0, 255] (8-bit, scaled here)."""

    image: Image | None = None
    images: list[Image] | None = Field(default=None, min_length=1)
    probabilities: bool = False
    group: Group | None = Field(default=None, description=GROUP_DOC)

    def items(self) -> list[Image]:
        if (self.image is None) == (self.images is None):
            raise ValueError("give exactly one of `image` or `images`")
        return [self.image] if self.image is not None else list(self.images or [])


class TermWeight(BaseModel):
    term: str
    weight: float
    """The term's share of the decision for the predicted class (positive: towards it)."""


class Prediction(BaseModel):
    prediction_id: str
    label: int
    class_name: str
    confidence: float
    probabilities: dict[str, float] | None = None
    explanation: list[TermWeight] | None = None
    """Text with ``explain=true``: the terms that drove the prediction, strongest first."""


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model_version: str
    inference_ms: float
    """Time spent in the model for the whole request, in milliseconds."""


class FeedbackRequest(_Body):
    prediction_id: Text = Field(min_length=1, max_length=64)
    label: int = Field(ge=0, le=MAX_LABEL, description="the true class index")


class FeedbackResponse(BaseModel):
    prediction_id: str
    accepted: bool


class ReloadRequest(_Body):
    text_model: Text | None = None
    image_model: Text | None = None


class ReloadResponse(BaseModel):
    reloaded: dict[str, str]
    """kind -> the version now serving."""


class ErrorResponse(BaseModel):
    detail: Any


async def validation_error(request: Request, exc: Exception) -> Response:
    """A 422 as FastAPI writes it (``{"detail": [errors]}``), its JSON with ASCII escapes:
    the errors echo the input, and an input with a lone surrogate cannot be written as UTF-8
    (FastAPI's own handler failed on it: a 500 and a dropped connection, not the 422)."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response

    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, separators=(",", ":"))
    return Response(body, status_code=422, media_type="application/json")
