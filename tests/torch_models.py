"""Tiny real torch and Lightning models, importable as ``tests.torch_models:Class``.

The converters load state dicts, pickled modules and checkpoints by importing a class from a
``package.module:Class`` string, so these live in a module rather than inside the tests.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

__all__ = [
    "BranchOnSum",
    "LitClassifier",
    "MLP",
    "SmallCNN",
    "TwoInTwoOut",
    "UnexportableOp",
    "WithArguments",
]


class SmallCNN(nn.Module):
    """1x8x8 images -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


class MLP(nn.Module):
    """16 features -> 4 outputs, with dropout so that eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4), nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BranchOnSum(nn.Module):
    """A branch on a tensor's value: a trace freezes whichever side the sample took."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


class TwoInTwoOut(nn.Module):
    """Two inputs, a tuple of two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(a + b), (a * b).sum(dim=1, keepdim=True)


class WithArguments(nn.Module):
    """Cannot be instantiated without arguments, so a state dict alone cannot rebuild it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@torch.library.custom_op("modelport_tests::wiggle", mutates_args=())
def wiggle(x: torch.Tensor) -> torch.Tensor:
    """An operator no ONNX exporter knows."""
    return torch.sin(x) * 2


@wiggle.register_fake
def _wiggle_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class UnexportableOp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return wiggle(x) + 1


class LitClassifier(L.LightningModule):
    """A LightningModule with an example_input_array and a training step."""

    def __init__(self, features: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layers = nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes))
        self.example_input_array = torch.randn(2, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=-1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.layers(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)
