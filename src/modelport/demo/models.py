"""The demo's models: a small Lightning CNN for 8x8 digit images, and how to train it.

Imported only when the demo runs, because it imports torch and Lightning at module level.
"""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

__all__ = ["DigitsCNN", "train_cnn"]


class DigitsCNN(pl.LightningModule):
    """Two convolutions and a classifier head: 1x8x8 images in, 10 logits out."""

    def __init__(self, learning_rate: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
        # Lets modelport (and Lightning's to_onnx) export without being handed a sample.
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)  # type: ignore[no-any-return]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        images, labels = batch
        loss = nn.functional.cross_entropy(self(images), labels)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["learning_rate"])


def train_cnn(
    images: np.ndarray, labels: np.ndarray, epochs: int, progress: bool = True
) -> DigitsCNN:
    from lightning.pytorch.callbacks import RichProgressBar

    torch.manual_seed(0)
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
    model = DigitsCNN()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=[RichProgressBar(leave=True)] if progress else [],
    )
    with warnings.catch_warnings():  # Lightning's own deprecation notice, not the user's
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(model, loader)
    model.eval()
    return model
