"""Request and response bodies of the server's API (OpenAPI at /docs)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextRequest(_Body):
    """One text (``text``) or a batch (``texts``)."""

    text: str | None = Field(default=None, examples=["A wonderful, moving film."])
    texts: list[str] | None = Field(default=None, min_length=1)
    probabilities: bool = False
    """Also return the probability of every class."""
    explain: bool = False
    """Also return the terms that drove each prediction (TF-IDF weight x coefficient)."""

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
    prediction_id: str = Field(min_length=1, max_length=64)
    label: int = Field(ge=0, description="the true class index")


class FeedbackResponse(BaseModel):
    prediction_id: str
    accepted: bool


class ReloadRequest(_Body):
    text_model: str | None = None
    image_model: str | None = None


class ReloadResponse(BaseModel):
    reloaded: dict[str, str]
    """kind -> the version now serving."""


class ErrorResponse(BaseModel):
    detail: Any
