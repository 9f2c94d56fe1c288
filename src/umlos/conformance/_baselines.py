"""The plain PyTorch baselines of ``umlos bench``: what a user writes by hand (ADR 0016).

Each baseline trains the same model shape on the same rows for the same number of optimizer
steps as its workload's manifest, with ``nn.Module`` + ``torch.optim.AdamW``, ``torch.randperm``
shuffling, full batches only and ``loss.item()`` every step (the host sync a training loop does
to log its loss). Nothing here imports UML_OS's data, model or training code (only its error
tree): it is the independent side of the comparison. Loading the data is part of the job, as loading and hashing it is part of a run.

>>> import torch
>>> from umlos.conformance._baselines import PlainJob, run_plain
>>> job = PlainJob(model="mlp", data="digits", steps=2, batch=8, lr=1e-3, weight_decay=0.0)
>>> result = run_plain(job)
>>> result.steps, result.loss > 0.0
(2, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from numpy.typing import NDArray
from torch import Tensor, nn

from umlos.errors import ContractViolationError

ModelKind = Literal["mlp", "cnn", "transformer"]
DataKind = Literal["digits", "text"]

# Shapes, identical to the presets the workload manifests declare (umlos.model.presets).
DIGITS_FEATURES = 64
DIGITS_CLASSES = 10
MLP_HIDDEN = 128
CNN_CHANNELS = (16, 32)
CNN_HIDDEN = 128
LM_VOCAB = 256
LM_SEQ = 32
LM_D_MODEL = 64
LM_HEADS = 4
LM_LAYERS = 2
LM_FFN = 128


@dataclass(frozen=True, slots=True)
class PlainJob:
    """One plain training job: model, data, steps and AdamW hyper-parameters.

    ``text_path`` is the corpus for ``data="text"`` (byte windows of :data:`LM_SEQ`, labels
    shifted by one byte, as the manifest's ``format: text`` reads it).
    """

    model: ModelKind
    data: DataKind
    steps: int
    batch: int
    lr: float
    weight_decay: float
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    text_path: Path | None = None


@dataclass(frozen=True, slots=True)
class PlainResult:
    """Steps the loop made and its last loss."""

    steps: int
    loss: float


class Mlp(nn.Module):
    """64 → 128 → 10 with ReLU (the ``mlp`` preset)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(DIGITS_FEATURES, MLP_HIDDEN)
        self.head = nn.Linear(MLP_HIDDEN, DIGITS_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.fc1(x)))  # type: ignore[no-any-return]


class Cnn(nn.Module):
    """1×8×8 → conv 16 → pool → conv 32 → pool → 128 → 10 (the ``basic_cnn`` preset)."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2 = CNN_CHANNELS
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * 2 * 2, CNN_HIDDEN)
        self.head = nn.Linear(CNN_HIDDEN, DIGITS_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x.reshape(-1, 1, 8, 8))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(F.relu(self.fc1(x.flatten(1))))  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm block: bias-free attention projections and MLP, exact GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(LM_D_MODEL)
        self.qkv = nn.Linear(LM_D_MODEL, 3 * LM_D_MODEL, bias=False)
        self.out = nn.Linear(LM_D_MODEL, LM_D_MODEL, bias=False)
        self.ln2 = nn.LayerNorm(LM_D_MODEL)
        self.fc = nn.Linear(LM_D_MODEL, LM_FFN, bias=False)
        self.proj = nn.Linear(LM_FFN, LM_D_MODEL, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, LM_HEADS, d // LM_HEADS).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.out(a.transpose(1, 2).reshape(b, t, d))
        return h + self.proj(F.gelu(self.fc(self.ln2(h))))  # type: ignore[no-any-return]


class TinyLm(nn.Module):
    """Byte-level causal LM: token + learned position embeddings, blocks, LayerNorm, head."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(LM_VOCAB, LM_D_MODEL)
        self.pos = nn.Parameter(torch.zeros(LM_SEQ, LM_D_MODEL))
        self.blocks = nn.Sequential(*(Block() for _ in range(LM_LAYERS)))
        self.ln_f = nn.LayerNorm(LM_D_MODEL)
        self.head = nn.Linear(LM_D_MODEL, LM_VOCAB)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.ln_f(self.blocks(self.tok(x) + self.pos)))  # type: ignore[no-any-return]


def load_digits_train() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """scikit-learn's digits, four rows in five (row index mod 5 in 1..4): the manifests' split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rows = np.arange(len(y)) % 5 != 0
    return np.asarray(x[rows], dtype=np.float32), np.asarray(y[rows], dtype=np.int64)


def load_text_windows(path: Path) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Non-overlapping byte windows of :data:`LM_SEQ`; labels are the next byte of each."""
    tokens = np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.int64)
    n = (len(tokens) - 1) // LM_SEQ
    span = tokens[: n * LM_SEQ + 1]
    return span[:-1].reshape(n, LM_SEQ), span[1:].reshape(n, LM_SEQ)


def _model(kind: ModelKind) -> nn.Module:
    if kind == "mlp":
        return Mlp()
    if kind == "cnn":
        return Cnn()
    return TinyLm()


@contextlib.contextmanager
def _plain_torch(threads: int) -> Iterator[None]:
    """torch as a user has it: deterministic algorithms off; the tier's thread count.

    The UML_OS backend switches deterministic algorithms on process-wide; the baseline must not
    inherit that, and the contenders after it must get their setting back.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    saved_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(False)
    if saved_threads != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        if torch.get_num_threads() != saved_threads:
            torch.set_num_threads(saved_threads)


def run_plain(job: PlainJob) -> PlainResult:
    """Load the data and train ``job.steps`` steps."""
    with _plain_torch(job.threads):
        if job.data == "digits":
            xs, ys = load_digits_train()
            x, y = torch.from_numpy(xs), torch.from_numpy(ys)
        else:
            if job.text_path is None:
                raise ContractViolationError("a text job needs text_path", path="$.text_path")
            xw, yw = load_text_windows(job.text_path)
            x, y = torch.from_numpy(xw), torch.from_numpy(yw)
        device = torch.device(job.device)
        x, y = x.to(device), y.to(device)
        torch.manual_seed(job.seed)
        model = _model(job.model).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=job.lr, weight_decay=job.weight_decay)
        per_epoch = len(x) // job.batch
        loss_value, steps = math.nan, 0
        order = torch.randperm(len(x), device=device)
        for i in range(job.steps):
            j = i % per_epoch
            if i and j == 0:
                order = torch.randperm(len(x), device=device)
            idx = order[j * job.batch : (j + 1) * job.batch]
            opt.zero_grad(set_to_none=True)
            logits = model(x[idx])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            loss_value = loss.item()
            steps += 1
        return PlainResult(steps, loss_value)
