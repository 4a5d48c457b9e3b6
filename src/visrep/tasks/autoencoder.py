"""Autoencoders (seed 001, eq. 1-2): a backbone encoder, a bottleneck code and a decoder trained
to reconstruct their input, with the "additional constraints" the seed says they need.

- **bottleneck**: ``code_size``, the length of the code (``Autoencoder.to_code``);
- **denoising** (Vincent et al., ICML 2008): the encoder reads a corrupted input (``noise``:
  ``masking``, ``salt_pepper`` or ``gaussian``, of ``noise_level``) and eq. 1 compares its
  reconstruction with the *clean* input;
- **sparse codes**: ``sparsity`` times the L1 norm of the code is added to the loss.

The loss is eq. 1 averaged over the batch: the squared error summed over each image's pixels
(in [0, 1]), plus the sparsity term. Evaluation always reconstructs clean inputs:
``val/loss`` (the loss without corruption), ``test/mse`` (mean squared error per pixel) and
``test/mse_pca``, the same error of linear PCA with ``code_size`` components fitted on the
training split (a seeded subset of at most ``pca_samples`` images) and applied to the same
test images in the same pixel space, so ``metrics.json`` states whether the autoencoder beats
its linear counterpart (PCA is the optimal linear autoencoder: Baldi and Hornik 1989).

Any image data serves (the ``classification`` and ``identity`` families); labels are only used
to colour the 2-d code scatter. Artifacts after test: ``plots/reconstructions.png`` (test inputs
above their reconstructions) and, for 2-d codes, ``plots/latent_scatter.png``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchmetrics import MeanMetric

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE, LABEL
from visrep.errors import ConfigError, ShapeError
from visrep.losses.autoencoder import (
    Noise,
    check_noise,
    corrupt,
    l1_sparsity,
    reconstruction_loss,
)
from visrep.models.backbones.cnn import small_cnn
from visrep.models.generative import Autoencoder
from visrep.models.generative.decoders import DecoderKind
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.plots.embedding import plot_embedding
from visrep.plots.generation import plot_reconstructions
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

__all__ = [
    "AutoencoderTask",
    "GenerativeTaskMixin",
    "default_optim",
    "fit_pca",
    "pca_reconstruct",
    "spread_count",
]

Batch = dict[str, Any]
_SHOWN = 16  # test images in the reconstruction grid
_DECODERS = ("transposed", "upsample", "mlp")


def fit_pca(images: Tensor, n_components: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Linear PCA of flattened images: ``(mean (D,), components (k, D))`` with orthonormal rows.

    ``k = min(n_components, N, D)``; scikit-learn's :class:`~sklearn.decomposition.PCA`.

    >>> mean, comps = fit_pca(torch.rand(50, 1, 4, 4), 3)
    >>> mean.shape, comps.shape
    (torch.Size([16]), torch.Size([3, 16]))
    """
    x = images.detach().flatten(1).double().cpu().numpy()
    k = min(n_components, *x.shape)
    pca = PCA(n_components=k, random_state=seed).fit(x)
    return torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float()


def pca_reconstruct(images: Tensor, mean: Tensor, components: Tensor) -> Tensor:
    """The projection of images onto the PCA subspace, back in pixel space (same shape).

    >>> x = torch.rand(5, 1, 2, 2)
    >>> torch.allclose(pca_reconstruct(x, torch.zeros(4), torch.eye(4)), x)
    True
    """
    flat = images.flatten(1) - mean
    return ((flat @ components.T) @ components + mean).view_as(images)


def spread_count(batch_idx: int, num_batches: float, have: int, want: int, size: int) -> int:
    """How many samples of test batch ``batch_idx`` to keep so that ``want`` samples spread over
    the whole split (test sets are often sorted by class); 0 for batches between strides."""
    batches = int(num_batches) if math.isfinite(num_batches) and num_batches > 0 else 1
    stride = max(1, batches // want)
    if have >= want or batch_idx % stride:
        return 0
    return min(want - have, max(1, math.ceil(want / batches)), size)


def default_optim() -> OptimConfig:
    """Adam (Kingma and Ba 2015), lr 1e-3, constant, no weight decay: the generative tasks'
    optimiser when ``optim`` is not given (SGD at the shared default lr 0.1 diverges on the
    per-image sums of eq. 1 and the ELBO)."""
    return OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant")


class GenerativeTaskMixin:
    """What the autoencoder and VAE tasks share: a backbone encoder built from the data, image
    batches, test-time collection of reconstructions and 2-d codes, and their plots.

    A mixin placed before :class:`~visrep.tasks.base.Task` (``class AutoencoderTask(
    GenerativeTaskMixin, Task)``), not a task family of its own.

    Without ``optim``, Adam with lr 1e-3 (:func:`default_optim`). Subclasses build ``self.net`` (an :class:`~visrep.models.generative.EncoderDecoder` with
    ``embed`` and ``forward`` = reconstruction) and call :meth:`collect` in ``test_step``.
    """

    monitor: ClassVar[tuple[str, str] | None] = ("val/loss", "min")
    families = ("classification", "identity")  # any image data; labels only colour plots
    input_key = IMAGE
    embeds = True  # the code (autoencoder), the posterior mean (VAE)

    def __init__(
        self,
        backbone: BackboneFactory,
        decoder: DecoderKind,
        optim: OptimConfig | None,
    ) -> None:
        super().__init__(optim if optim is not None else default_optim())
        if decoder not in _DECODERS:
            raise ConfigError(
                f"model.decoder must be one of {', '.join(_DECODERS)}, got {decoder!r}"
            )
        self.backbone_spec = BACKBONES.spec(backbone)

    def build_encoder(self, spec: DataSpec) -> nn.Module:
        """The backbone for the data's channels and size, without a classifier."""
        if spec.in_chans is None or spec.image_size is None or spec.mean is None:
            raise ConfigError(
                f"{type(self).__name__} needs image data (channels, size, mean/std), got "
                f"{spec.family!r} data"
            )
        return BACKBONES.build(self.backbone_spec, spec.in_chans, 0, spec.image_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _log(self, stage: str, values: dict[str, Tensor], n: int) -> None:
        for name, v in values.items():
            train = stage == "train"
            self.log(
                f"{stage}/{name}", v, on_step=False, on_epoch=True, sync_dist=not train,
                prog_bar=name == "loss", batch_size=n,
            )  # fmt: skip

    # -- test-time collection ----------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._shown: list[tuple[Tensor, Tensor]] = []
        self._codes: list[tuple[Tensor, Tensor]] = []

    def collect(self, batch: Batch, batch_idx: int, x_hat: Tensor, code: Tensor) -> None:
        """Keep a few (input, reconstruction) pairs spread over the test split, and every code
        with its label when the code is 2-d."""
        x = batch[IMAGE]
        batches = self.trainer.num_test_batches[0] if self._trainer is not None else 1
        have = sum(len(s[0]) for s in self._shown)
        k = spread_count(batch_idx, batches, have, _SHOWN, len(x))
        if k:
            self._shown.append((x[:k].detach().cpu(), x_hat[:k].detach().cpu()))
        if code.shape[1] == 2:
            y = batch.get(LABEL)
            y = y.cpu() if isinstance(y, Tensor) else torch.zeros(len(x), dtype=torch.long)
            self._codes.append((code.detach().float().cpu(), y))

    def test_results(self) -> dict[str, Any]:
        """What :meth:`write_artifacts` draws, gathered at the end of the test epoch."""
        out: dict[str, Any] = {}
        if self._shown:
            out["reconstructions"] = tuple(torch.cat(t) for t in zip(*self._shown, strict=True))
        if self._codes:
            out["codes"] = tuple(torch.cat(t) for t in zip(*self._codes, strict=True))
        return out

    def on_test_epoch_end(self) -> None:
        self._test_results = self.test_results()

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: ``plots/reconstructions.png`` and, for 2-d codes,
        ``plots/latent_scatter.png``; subclasses add theirs."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        if "reconstructions" in results:
            x, x_hat = results["reconstructions"]
            plot_reconstructions(x, x_hat, run.plots / "reconstructions.png",
                                 title="test images (in) and reconstructions (out)")  # fmt: skip
        if "codes" in results:
            codes, labels = results["codes"]
            names = list(self.spec.class_names) if self.spec is not None else None
            plot_embedding(codes.numpy(), labels.numpy(), run.plots / "latent_scatter.png", names,
                           f"2-d codes of the test images ({type(self).__name__})")  # fmt: skip
        self._test_results = None
        return {}


class AutoencoderTask(GenerativeTaskMixin, Task):
    """Trains an :class:`~visrep.models.generative.Autoencoder` on eq. 1 (see the module).

    Args:
        backbone: the encoder, any registered backbone with its options (``--model.backbone
            mlp --model.backbone.width 256``); built for the data's channels and size.
        code_size: the bottleneck, the length of the code.
        decoder: ``transposed`` or ``upsample`` (convolutional, sized from the encoder's feature
            map) or ``mlp`` (mirrors an MLP encoder); see :mod:`visrep.models.generative.decoders`.
        pool: code from the encoder's pooled features instead of its flattened feature map.
        noise: corruption of the denoising autoencoder (``masking``, ``salt_pepper``,
            ``gaussian``), or None.
        noise_level: fraction of corrupted components (masking, salt-and-pepper, in [0, 1]) or
            the Gaussian noise's standard deviation (>= 0).
        sparsity: weight of the L1 penalty on codes (>= 0).
        pca_samples: training images (a seeded subset) the PCA baseline is fitted on.
        optim: optimiser and schedule.
    """

    def __init__(
        self,
        backbone: BackboneFactory = small_cnn,
        code_size: int = 32,
        decoder: DecoderKind = "transposed",
        pool: bool = False,
        noise: Noise | None = None,
        noise_level: float = 0.3,
        sparsity: float = 0.0,
        pca_samples: int = 20000,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(backbone, decoder, optim)
        if code_size < 1:
            raise ConfigError(f"model.code_size must be >= 1, got {code_size}")
        check_noise(noise, noise_level, "model.noise")
        if not sparsity >= 0:
            raise ConfigError(f"model.sparsity must be >= 0, got {sparsity}")
        if pca_samples < 1:
            raise ConfigError(f"model.pca_samples must be >= 1, got {pca_samples}")
        self.save_hyperparameters()
        self.hparams["backbone"] = self.backbone_spec  # plain data, whatever form was given
        self._pca: tuple[Tensor, Tensor] | None = None

    def build(self, spec: DataSpec) -> None:
        hp = self.hparams
        self.net = Autoencoder(
            self.build_encoder(spec), spec.mean, spec.std, spec.in_chans, spec.image_size,
            hp.code_size, hp.decoder, hp.pool,
        )  # fmt: skip
        self.val_mse, self.test_mse, self.test_mse_pca = MeanMetric(), MeanMetric(), MeanMetric()

    # -- steps ---------------------------------------------------------------------------------------
    def _losses(self, x_in: Tensor, x: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        code = self.net.encode(x_in)
        x_hat = self.net.decode(code)
        recon = reconstruction_loss(x_hat, x)
        values = {"loss": recon.mean(), "recon": recon.mean()}
        if self.hparams.sparsity > 0:
            l1 = l1_sparsity(code).mean()
            values |= {"loss": values["loss"] + self.hparams.sparsity * l1, "l1": l1}
        return values, x_hat, code

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x = batch[IMAGE]
        noise = self.hparams.noise
        x_in = corrupt(x, noise, self.hparams.noise_level) if noise else x
        values, _, _ = self._losses(x_in, x)
        self._log("train", values, len(x))
        return values["loss"]

    def _eval_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor, Tensor]:
        x = batch[IMAGE]
        values, x_hat, code = self._losses(x, x)  # evaluation reconstructs clean inputs
        self._log(stage, values, len(x))
        mse = getattr(self, f"{stage}_mse")
        mse.update((x_hat - x).square().flatten(1).mean(1))
        self.log(f"{stage}/mse", mse, batch_size=len(x))
        return x, x_hat, code

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    # -- the PCA baseline ------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_pca_baseline(self) -> tuple[Tensor, Tensor] | None:
        """PCA with ``code_size`` components on (a seeded subset of) the training split, or None
        when no training split is at hand."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        ds = getattr(dm, "train_set", None)
        if ds is None or len(ds) == 0:
            return None
        n = min(len(ds), self.hparams.pca_samples)
        idx = np.sort(np.random.default_rng(0).permutation(len(ds))[:n])
        loader = DataLoader(Subset(ds, idx.tolist()), batch_size=512,
                            collate_fn=type(dm).collate_fn)  # fmt: skip
        images = torch.cat([b[IMAGE] for b in loader])
        if tuple(images.shape[1:]) != (self.net.in_chans, *self.net.image_size):
            raise ShapeError(f"the training images are {tuple(images.shape[1:])}, not the "
                             f"model's {(self.net.in_chans, *self.net.image_size)}")  # fmt: skip
        mean, comps = fit_pca(images, self.hparams.code_size)
        return mean.to(self.device), comps.to(self.device)

    def on_test_start(self) -> None:
        self._pca = self.fit_pca_baseline()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, x_hat, code = self._eval_step(batch, "test")
        if self._pca is not None:
            x_pca = pca_reconstruct(x, *self._pca)
            self.test_mse_pca.update((x_pca - x).square().flatten(1).mean(1))
            self.log("test/mse_pca", self.test_mse_pca, batch_size=len(x))
        self.collect(batch, batch_idx, x_hat, code)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The mean squared reconstruction error per pixel of each image (``mse``)."""
        x = batch[IMAGE]
        return {"mse": (self.net(x) - x).square().flatten(1).mean(1)}
