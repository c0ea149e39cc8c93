"""Adversarial examples for the paper's section 4.3: a small CNN classifier and the Boundary
Attack, FGSM and PGD from foolbox, with each attack's success rate and L2 perturbation."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import foolbox as fb
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ATTACKS = ("boundary", "fgsm", "pgd")


class Classifier(nn.Module):
    """conv 3x3 32 -> pool -> conv 3x3 64 -> pool -> dense 128 -> classes, on [0, 1] pixels."""

    def __init__(self, channels: int, size: int, n_classes: int) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"image size {size} must be a multiple of 4")
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (size // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))  # (N, classes) logits


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> Classifier:
    """Cross-entropy with Adam on images x (N, C, H, W) in [0, 1] and labels y (N,)."""
    if x.dim() != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"x must be square images (N, C, H, W), got shape {tuple(x.shape)}")
    if len(y) != len(x) or len(x) == 0:
        raise ValueError(f"x has {len(x)} images and y {len(y)} labels")
    torch.manual_seed(seed)
    model = Classifier(x.shape[1], x.shape[2], n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    model.eval()
    if len(x) == 0:
        return torch.empty(0, dtype=torch.int64)
    return torch.cat([model(part).argmax(dim=1) for part in x.split(batch)])


@dataclass(frozen=True)
class AttackConfig:
    """Budgets: FGSM and PGD are L-infinity attacks within eps; the Boundary Attack is
    decision-based and minimises the L2 distance over a fixed number of steps."""

    fgsm_eps: float = 0.1
    pgd_eps: float = 0.1
    pgd_steps: int = 40
    boundary_steps: int = 5000
    seed: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class AttackResult:
    """One attack on the images that the classifier got right (the others are not attacked)."""

    name: str
    index: np.ndarray  # (N,) rows of the attack's input that were attacked
    original: torch.Tensor  # (N, C, H, W)
    adversarial: torch.Tensor  # (N, C, H, W), within the [0, 1] pixel bounds
    labels: torch.Tensor  # (N,) true classes
    predicted: torch.Tensor  # (N,) the classifier's class for the adversarial image
    n_input: int  # images given, correctly classified or not

    @property
    def success(self) -> np.ndarray:
        return (self.predicted != self.labels).numpy()

    @property
    def l2(self) -> np.ndarray:
        """||x_adv - x||_2 per image in [0, 1] pixel units, (N,)."""
        return (self.adversarial - self.original).flatten(1).norm(dim=1).numpy()

    @property
    def linf(self) -> np.ndarray:
        return (self.adversarial - self.original).flatten(1).abs().amax(dim=1).numpy()

    def summary(self) -> dict[str, float | int | None]:
        """Success rate over the attacked images; median L2 and max L-inf over the successes."""
        ok = self.success
        return {
            "n_input": self.n_input,
            "n_attacked": len(ok),
            "n_success": int(ok.sum()),
            "success_rate": float(ok.mean()) if len(ok) else None,
            "median_l2": float(np.median(self.l2[ok])) if ok.any() else None,
            "max_linf": float(self.linf[ok].max()) if ok.any() else None,
        }


def _foolbox_attack(name: str, cfg: AttackConfig) -> tuple[fb.attacks.Attack, float | None]:
    if name == "boundary":
        return fb.attacks.BoundaryAttack(steps=cfg.boundary_steps), None
    if name == "fgsm":
        return fb.attacks.FGSM(), cfg.fgsm_eps
    if name == "pgd":
        return fb.attacks.LinfPGD(steps=cfg.pgd_steps), cfg.pgd_eps
    raise ValueError(f"unknown attack {name!r}; choose one of {ATTACKS}")


def run_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, cfg: AttackConfig
) -> AttackResult:
    """Attacks every image of x (N, C, H, W) in [0, 1] that `model` classifies as y (untargeted).

    Success is judged here, from the model's own prediction on the returned image, not from
    foolbox's flag. Seeded: the Boundary Attack's random steps and PGD's random start draw
    from torch's global generator, set to cfg.seed first.
    """
    attack, eps = _foolbox_attack(name, cfg)
    model.eval()
    right = np.flatnonzero((predict(model, x) == y).numpy())
    inputs, labels = x[right].contiguous(), y[right]
    if len(right) == 0:
        adversarial = inputs.clone()
    else:
        torch.manual_seed(cfg.seed)
        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu")
        with warnings.catch_warnings():
            # The Boundary Attack's initialisation warns for images it finds no start for;
            # those come back unchanged and count as failures below.
            warnings.simplefilter("ignore", UserWarning)
            _, clipped, _ = attack(fmodel, inputs, labels, epsilons=eps)
        adversarial = clipped.detach().clamp(0.0, 1.0)
    return AttackResult(
        name=name,
        index=right,
        original=inputs,
        adversarial=adversarial,
        labels=labels,
        predicted=predict(model, adversarial),
        n_input=len(x),
    )
