"""Training loop for the CIFAR-10 CNNs: data in memory, seeded, one progress bar per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm import tqdm

from mltrail.models.cnn import Recipe, build, logits_in_batches


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "epoch"}


@dataclass(frozen=True)
class CnnResult:
    model: nn.Module
    history: list[EpochRecord]
    train_time_s: float
    predict_time_s: float
    accuracy: float
    test_loss: float
    predictions: NDArray[np.int64]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = logits_in_batches(model, x)
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item()


def train_cnn(
    x_train: NDArray[np.float32],
    y_train: NDArray[np.int64],
    x_test: NDArray[np.float32],
    y_test: NDArray[np.int64],
    recipe: Recipe,
    epochs: int,
    seed: int,
    device: str = "auto",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = True,
) -> CnnResult:
    """Train ``recipe`` for ``epochs``; evaluate on the test set after each epoch."""
    generator = seed_everything(seed)
    dev = pick_device(device)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = build(recipe.architecture).to(dev).to(memory_format=fmt)  # type: ignore[call-overload]
    xt = torch.from_numpy(x_train).to(dev).contiguous(memory_format=fmt)
    yt = torch.from_numpy(y_train).to(dev)
    xs = torch.from_numpy(x_test).to(dev).contiguous(memory_format=fmt)
    ys = torch.from_numpy(y_test).to(dev)
    steps = (len(xt) + recipe.batch_size - 1) // recipe.batch_size
    optimizer: torch.optim.Optimizer
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(), recipe.lr, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            recipe.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=recipe.weight_decay,
        )
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=epochs * steps, pct_start=0.25
        )
        if recipe.schedule == "onecycle"
        else None
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    history: list[EpochRecord] = []
    train_time = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(xt), generator=generator).to(dev)
        total_loss, correct = 0.0, 0
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
        for step in bar:
            idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            xb, yb = xt[idx], yt[idx]
            if recipe.flip:
                flip = torch.rand(len(idx), generator=generator).to(dev) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        seconds = time.perf_counter() - start
        train_time += seconds
        test_loss, test_acc = _evaluate(model, xs, ys)
        record = EpochRecord(
            epoch, total_loss / len(xt), correct / len(xt), test_loss, test_acc, seconds
        )
        history.append(record)
        if progress:
            tqdm.write(
                f"epoch {epoch}/{epochs}: loss {record.train_loss:.4f}, "
                f"test accuracy {test_acc:.4f} ({seconds:.1f} s)"
            )
        if on_epoch is not None:
            on_epoch(record)
    start = time.perf_counter()
    logits = logits_in_batches(model, xs)
    predict_time = time.perf_counter() - start
    predictions = logits.argmax(1).cpu().numpy().astype(np.int64)
    test_loss = nn.functional.cross_entropy(logits, ys).item()
    accuracy = float((predictions == y_test).mean())
    return CnnResult(
        model.cpu().to(memory_format=torch.contiguous_format),
        history,
        train_time,
        predict_time,
        accuracy,
        test_loss,
        predictions,
    )
