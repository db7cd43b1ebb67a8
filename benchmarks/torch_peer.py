"""A PyTorch peer of admm_jax's DU-ADMM training step (for benchmarks and equivalence checks).

This is a straightforward PyTorch implementation of what ``admm_jax.train.step.make_train_step``
computes for the "paper" training preset, written independently so that the two can be timed
side by side (``benchmarks/bench_vs_torch.py``) and checked against each other
(``tests/test_torch_peer.py``). It is not part of the library and needs ``torch`` (the optional
``bench`` extra; on a CPU machine install the CPU build, e.g. ``pip install torch==2.13.0``).

One step, per mini-batch of B images (NCHW here; admm_jax uses NHWC):

* every sample has its own problem and operator, drawn by admm_jax (:func:`peer_batch_from_jax`
  turns admm_jax's batch of ``SelectOperator`` s into tensors, so both see the same batch):
  masks (PID, BI, SI: ``A x = m ⊙ x``) and the 2×2 box average (SR);
* ADMM in the released code's sign convention, T tied iterations::

      z⁰ = A⁺y, u⁰ = 0
      x ← P(z + u)                          (the prior, same weights every iteration)
      z ← (AᵀA + ρI)⁻¹(Aᵀy + ρ(x − u))      (exact: mask b/(m² + ρ); SR (b − AᵀA b/(ρ + ¼))/ρ)
      u ← u + z − x

* the loss is the mean over the batch of 4·MSE(z_T, x*) (= MSE in the [−1, 1] network domain),
  or with ``loss="psnr"`` the mean of 10·log10(MSE) in [0, 1] (not in the paper);
* element-wise gradient clipping to ±``grad_clip``, then Adam (β₁ = 0 in the paper preset).

The prior ``P`` maps [0, 1] images to ``net(2x − 1)/2 + 0.5``; ``net`` is either the paper's
12-layer bottleneck network (:class:`ProjectionPeer`: nearest-neighbour resizes with the DU-ADMM
code's index maps, TF 'SAME' padding, instance norm with ε = 1e-6, ``softplus(2x + 2)/2 − 1``,
the channel-wise dense layer) or the residual U-Net (:class:`UNetPeer`). Weights are copied from
an admm_jax parameter pytree with :func:`load_jax_params` (layouts converted, shapes checked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

import numpy as np
try:
    import torch
except ImportError:  # a benchmark peer, not part of the library: say what to install
    if __name__ == "__main__":
        raise SystemExit("error: torch_peer.py needs PyTorch: pip install torch (the CPU build "
                         "is enough); it is imported by bench_vs_torch.py, not run itself")
    raise
import torch.nn.functional as F
from torch import nn

#: Standard deviation of the (untruncated) normal of the weight initialiser; samples are kept in
#: ±2 standard deviations (TF1 ``truncated_normal_initializer(0, 0.005)``).
INIT_STDDEV = 0.005
#: Instance-norm ε of admm_jax's ``InstanceNorm`` (tf.contrib instance_norm default).
INSTANCE_NORM_EPS = 1e-6


# ------------------------------------------------------------------------------- layers
def same_pads(n: int, k: int, stride: int) -> tuple[int, int]:
    """TF/JAX 'SAME' padding (before, after) of one spatial axis of length ``n``.

    Output length ``ceil(n / stride)``; the total padding is split with the smaller half first
    (k = 4, stride 1: (1, 2); k = 2: (0, 1); k = 3, stride 2 on an even n: (0, 1)).
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2


class SameConv(nn.Module):
    """A k×k convolution with 'SAME' padding and bias. Parameters: ``kernel`` (out, in, k, k),
    ``bias`` (out,), truncated-normal / zero initialised (``zero=True``: kernel zero too)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, zero: bool = False):
        super().__init__()
        self.k, self.stride = int(k), int(stride)
        self.kernel = nn.Parameter(torch.empty(c_out, c_in, self.k, self.k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        if zero:
            nn.init.zeros_(self.kernel)
        else:
            nn.init.trunc_normal_(self.kernel, 0.0, INIT_STDDEV, -2 * INIT_STDDEV,
                                  2 * INIT_STDDEV)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = same_pads(x.shape[2], self.k, self.stride)
        pw = same_pads(x.shape[3], self.k, self.stride)
        if ph[0] == ph[1] and pw[0] == pw[1]:  # symmetric: let the convolution pad
            return F.conv2d(x, self.kernel, self.bias, self.stride, (ph[0], pw[0]))
        x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, self.kernel, self.bias, self.stride)


class InstanceNormPeer(nn.Module):
    """Per-sample, per-channel normalisation over H, W (biased variance, ε = 1e-6), then
    ``· scale + offset``."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.offset = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.scale, bias=self.offset, eps=INSTANCE_NORM_EPS)


def elu_like(x: torch.Tensor) -> torch.Tensor:
    """The DU-ADMM activation ``softplus(2x + 2)/2 − 1``."""
    return F.softplus(2.0 * x + 2.0) / 2.0 - 1.0


def custom_index_map(n_in: int, n_out: int) -> list[int]:
    """Source row of every output row of the DU-ADMM code's nearest-neighbour resize:
    ``floor(k·(n_in − 1)/(n_out − 1))`` (64→32: 0, 2, …, 60, 63; 8→16: 0, 0, 0, 1, 1, …, 7)."""
    if n_out == 1:
        return [0]
    return [(k * (n_in - 1)) // (n_out - 1) for k in range(n_out)]


def index_map_pieces(idx: list[int]) -> list[tuple[int, int, int, int]]:
    """Split a non-decreasing index map into ``(start, stop, step, repeat)`` pieces: the map is
    the concatenation of ``range(start, stop, step)`` with every entry repeated ``repeat`` times.

    Why: gathering with ``index_select`` is the obvious way to resize, but its backward
    (``index_add``) combined with a following convolution makes torch 2.13's inductor CPU
    code write out of bounds (heap corruption, pytorch issues 181618/181689); strided slices
    and broadcast repeats avoid it and are as cheap.
    """
    runs: list[list[int]] = []  # [source, count]
    for i in idx:
        if runs and runs[-1][0] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    pieces: list[tuple[int, int, int, int]] = []
    j = 0
    while j < len(runs):
        src, rep = runs[j]
        step = runs[j + 1][0] - src if j + 1 < len(runs) and runs[j + 1][1] == rep else 1
        k = j + 1
        while k < len(runs) and runs[k][1] == rep and runs[k][0] - runs[k - 1][0] == step:
            k += 1
        pieces.append((src, runs[k - 1][0] + 1, step, rep))
        j = k
    return pieces


def _repeat_each(x: torch.Tensor, dim: int, rep: int) -> torch.Tensor:
    """Every entry along ``dim`` repeated ``rep`` times (a broadcast, no gather)."""
    if rep == 1:
        return x
    shape = list(x.shape)
    x = x.unsqueeze(dim + 1).expand(*shape[:dim + 1], rep, *shape[dim + 1:])
    return x.flatten(dim, dim + 1)


def _resize_axis(x: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    parts = []
    for start, stop, step, rep in index_map_pieces(custom_index_map(x.shape[dim], n_out)):
        sl = [slice(None)] * x.ndim
        sl[dim] = slice(start, stop, step)
        parts.append(_repeat_each(x[tuple(sl)], dim, rep))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def resize_nearest(x: torch.Tensor, h_out: int, w_out: int) -> torch.Tensor:
    """Nearest-neighbour resize of an NCHW batch with :func:`custom_index_map` on H and W."""
    if x.shape[2] != h_out:
        x = _resize_axis(x, 2, h_out)
    if x.shape[3] != w_out:
        x = _resize_axis(x, 3, w_out)
    return x


class ChannelWiseDensePeer(nn.Module):
    """Channel ``c`` gets its own (H·W)×(H·W) matrix: ``out[b, c, q] = Σ_p in[b, c, p] ·
    kernel[c, p, q]`` over row-major spatial indices. Parameter ``kernel`` (C, H·W, H·W)."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(channels, spatial, spatial))
        nn.init.trunc_normal_(self.kernel, 0.0, INIT_STDDEV, -2 * INIT_STDDEV, 2 * INIT_STDDEV)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = torch.einsum("bcp,cpq->bcq", x.reshape(b, c, h * w), self.kernel)
        return y.reshape(b, c, h, w)


# ------------------------------------------------------------------------------- priors
def scale_channels(channels: int, width: float) -> int:
    """``round(channels · width)``, at least 1 (as admm_jax's ``scale_channels``)."""
    return max(1, int(round(channels * float(width))))


class ProjectionPeer(nn.Module):
    """The paper's prior network in the [−1, 1] domain (layer table: admm_jax's
    ``ProjectionNetwork``; attribute names equal admm_jax's so weights map one to one).

    Encoder: conv0 4×4, conv1 4×4 at 64²; conv2/3/4 = NN-resize ×½ + 2×2 conv (32², 16², 8²);
    fc5 channel-wise dense (no bias); conv_fc 2×2. Decoder: deconv3/2/1 = NN-resize ×2 + 4×4 conv
    (16², 32², 64²), deconv0 4×4, recon 4×4 (linear). Every conv except recon is followed by
    instance norm and the elu-like activation (fc5 by neither).
    """

    def __init__(self, width: float = 1.0, image_size: int = 64, image_channels: int = 3):
        super().__init__()
        c64, c128, c256, c512, c1024 = (scale_channels(c, width)
                                        for c in (64, 128, 256, 512, 1024))
        self.image_size = int(image_size)
        specs = [("conv0", image_channels, c64, 4), ("conv1", c64, c128, 4),
                 ("conv2", c128, c256, 2), ("conv3", c256, c512, 2), ("conv4", c512, c1024, 2),
                 ("conv_fc", c1024, c1024, 2), ("deconv3", c1024, c512, 4),
                 ("deconv2", c512, c256, 4), ("deconv1", c256, c128, 4),
                 ("deconv0", c128, c64, 4), ("recon", c64, image_channels, 4)]
        for name, c_in, c_out, k in specs:
            setattr(self, name, SameConv(c_in, c_out, k))
        norms = [("bn0", c64), ("bn1", c128), ("bn2", c256), ("bn3", c512), ("bn4", c1024),
                 ("latent_norm", c1024), ("debn3", c512), ("debn2", c256), ("debn1", c128),
                 ("debn0", c64)]
        for name, c in norms:
            setattr(self, name, InstanceNormPeer(c))
        self.fc5 = ChannelWiseDensePeer(c1024, (self.image_size // 8) ** 2)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        h = elu_like(self.bn0(self.conv0(v)))
        h = elu_like(self.bn1(self.conv1(h)))
        h = elu_like(self.bn2(self.conv2(resize_nearest(h, s // 2, s // 2))))
        h = elu_like(self.bn3(self.conv3(resize_nearest(h, s // 4, s // 4))))
        h = elu_like(self.bn4(self.conv4(resize_nearest(h, s // 8, s // 8))))
        h = elu_like(self.latent_norm(self.conv_fc(self.fc5(h))))
        h = elu_like(self.debn3(self.deconv3(resize_nearest(h, s // 4, s // 4))))
        h = elu_like(self.debn2(self.deconv2(resize_nearest(h, s // 2, s // 2))))
        h = elu_like(self.debn1(self.deconv1(resize_nearest(h, s, s))))
        h = elu_like(self.debn0(self.deconv0(h)))
        return self.recon(h)


class ResBlockPeer(nn.Module):
    """``h + conv_b(relu(conv_a(h)))`` with 3×3 'SAME' convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_a = SameConv(channels, channels, 3)
        self.conv_b = SameConv(channels, channels, 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv_b(F.relu(self.conv_a(h)))


class UNetPeer(nn.Module):
    """The residual U-Net prior (admm_jax's ``ResidualUNet``): ``v + tail(U(v))`` with a
    zero-initialised tail, stride-2 3×3 'SAME' convs down, NN ×2 + conv up, additive skips.
    (Its own initialisation differs from flax's default; weights are meant to be copied.)"""

    def __init__(self, width: float = 0.25, levels: int = 3, blocks: int = 1,
                 image_channels: int = 3):
        super().__init__()
        c = max(1, int(round(64 * float(width))))
        chans = [c * 2 ** k for k in range(levels)]
        self.levels = int(levels)
        self.head = SameConv(image_channels, c, 3)
        self.enc = nn.ModuleList([nn.ModuleList([ResBlockPeer(ch) for _ in range(blocks)])
                                  for ch in chans])
        self.down = nn.ModuleList([SameConv(chans[k], chans[k + 1], 3, stride=2)
                                   for k in range(levels - 1)])
        self.up = nn.ModuleList([SameConv(chans[k + 1], chans[k], 3)
                                 for k in range(levels - 1)])
        self.dec = nn.ModuleList([nn.ModuleList([ResBlockPeer(chans[k]) for _ in range(blocks)])
                                  for k in range(levels - 1)])
        self.tail = SameConv(c, image_channels, 3, zero=True)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.head(v)
        skips = []
        for k in range(self.levels):
            for block in self.enc[k]:
                h = block(h)
            if k < self.levels - 1:
                skips.append(h)
                h = self.down[k](h)
        for k in reversed(range(self.levels - 1)):
            h = _repeat_each(_repeat_each(h, 2, 2), 3, 2)
            h = self.up[k](h) + skips[k]
            for block in self.dec[k]:
                h = block(h)
        return v + self.tail(h)


def peer_prior(cfg: Any) -> nn.Module:
    """The torch network for an admm_jax ``TrainConfig`` (architecture, width; float32).

    Raises ValueError for options the peer does not implement (``residual``/``gated`` variants
    of the paper network, bfloat16 compute).
    """
    if getattr(cfg, "residual", False) or getattr(cfg, "gated", False):
        raise ValueError("the torch peer implements the paper network without residual/gated "
                         f"options, got residual={cfg.residual}, gated={cfg.gated}")
    if cfg.compute_dtype != "float32":
        raise ValueError(f"the torch peer runs float32 only, got compute_dtype="
                         f"{cfg.compute_dtype!r}")
    if cfg.architecture == "unet":
        return UNetPeer(width=cfg.width)
    if cfg.architecture == "paper":
        return ProjectionPeer(width=cfg.width, image_size=cfg.image_size)
    raise ValueError(f"architecture must be 'paper' or 'unet', got {cfg.architecture!r}")


# ------------------------------------------------------------------------------- weights
def _path_name(path: Iterable[Any]) -> str:
    """Dotted name of a JAX tree path (``['enc'][0][0]['conv_a']['kernel'].value`` →
    ``enc.0.0.conv_a.kernel``; a trailing ``.value`` of an nnx variable is dropped)."""
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    if parts and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def jax_to_torch_layout(a: np.ndarray) -> np.ndarray:
    """admm_jax layout → peer layout: 4-D conv kernels HWIO → OIHW; everything else as is."""
    return np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a


def torch_to_jax_layout(a: np.ndarray) -> np.ndarray:
    """Inverse of :func:`jax_to_torch_layout` (OIHW → HWIO)."""
    return np.transpose(a, (2, 3, 1, 0)) if a.ndim == 4 else a


def flatten_jax_params(params: Any) -> dict[str, np.ndarray]:
    """``{dotted name: numpy array}`` of a JAX parameter pytree (e.g. an ``nnx.State``)."""
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {_path_name(path): np.asarray(leaf) for path, leaf in flat}


def load_jax_params(model: nn.Module, params: Any) -> None:
    """Copy every leaf of the admm_jax parameter pytree ``params`` into the matching torch
    parameter of ``model`` (same dotted name), converting layouts and checking shapes.

    Raises ValueError naming the leaves when the two sets of names differ or a shape does not
    match.
    """
    source = flatten_jax_params(params)
    target = dict(model.named_parameters())
    missing, unexpected = sorted(set(target) - set(source)), sorted(set(source) - set(target))
    if missing or unexpected:
        raise ValueError(f"parameter names differ: torch-only {missing}, jax-only {unexpected}")
    with torch.no_grad():
        for name, p in target.items():
            value = jax_to_torch_layout(source[name])
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"parameter {name}: admm_jax shape {source[name].shape} maps "
                                 f"to {value.shape}, torch expects {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.array(value, copy=True)).to(p.dtype))


def torch_tensors_in_jax_layout(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Gradients / parameters keyed by dotted name, as numpy arrays in admm_jax's layout."""
    return {k: torch_to_jax_layout(v.detach().cpu().numpy()) for k, v in tensors.items()}


# ------------------------------------------------------------------------------- the batch
@dataclass
class PeerBatch:
    """One mini-batch with its per-sample operators, NCHW tensors.

    images: (B, C, H, W) ground truth in [0, 1]; mask: (B, C, H, W) mask of a masked sample
    (ones where the sample is SR, unused there); y_full: (B, C, H, W) measurement of a masked
    sample (zeros for SR); y_low: (B, C, H/2, W/2) measurement of an SR sample (zeros for masked
    ones); is_sr: (B, 1, 1, 1) bool; rho: (B, 1, 1, 1) penalty.
    """

    images: torch.Tensor
    mask: torch.Tensor
    y_full: torch.Tensor
    y_low: torch.Tensor
    is_sr: torch.Tensor
    rho: torch.Tensor

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> "PeerBatch":
        """A copy on ``device`` with floating tensors cast to ``dtype``."""
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            out[f.name] = t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        return PeerBatch(**out)


def _nchw(a: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 1, 2))))


def peer_batch_from_jax(op: Any, y: tuple, rho: Any, index: Any, images: Any) -> PeerBatch:
    """Convert admm_jax's mixed batch to tensors: ``measure_mixed``'s ``op, y, index`` and the
    per-sample training ρ.

    ``op`` must be a batch of ``SelectOperator`` whose branches are ``Mask`` operators and at
    most one kind of ``BoxDownsample`` (factor 2, true adjoint): the paper's PID, BI, SI, SR.
    """
    from admm_jax.operators import BoxDownsample, Mask

    index = np.asarray(index)
    images = np.asarray(images, np.float32)
    mask, y_full = np.ones_like(images), np.zeros_like(images)
    b, h, w, c = images.shape
    y_low = np.zeros((b, h // 2, w // 2, c), np.float32)
    is_sr = np.zeros(b, bool)
    for k, branch in enumerate(op.branches):
        sel = index == k
        if isinstance(branch, Mask):
            mask[sel] = np.asarray(branch.mask)[sel]
            y_full[sel] = np.asarray(y[k])[sel]
        elif (isinstance(branch, BoxDownsample) and branch.factor == 2
              and branch.adjoint_scale == 1.0):
            y_low[sel] = np.asarray(y[k])[sel]
            is_sr[sel] = True
        else:
            raise ValueError(f"branch {k} ({type(branch).__name__}) is not supported by the "
                             "torch peer: only Mask and BoxDownsample(factor=2, "
                             "adjoint_scale=1)")
    rho_t = torch.from_numpy(np.asarray(rho, np.float32).reshape(b, 1, 1, 1).copy())
    return PeerBatch(images=_nchw(images), mask=_nchw(mask), y_full=_nchw(y_full),
                     y_low=_nchw(y_low), is_sr=torch.from_numpy(is_sr).reshape(b, 1, 1, 1),
                     rho=rho_t)


# ------------------------------------------------------------------------------- ADMM + loss
def _upsample2(y: torch.Tensor) -> torch.Tensor:
    return _repeat_each(_repeat_each(y, 2, 2), 3, 2)


def data_step(batch: PeerBatch, rhs: torch.Tensor) -> torch.Tensor:
    """``(AᵀA + ρI)⁻¹ rhs`` per sample: mask ``rhs/(m² + ρ)``; SR (2×2 box average, s⁻² = ¼)
    ``(rhs − up(avg(rhs))·¼/(ρ + ¼))/ρ``. Both are evaluated and the sample's one selected."""
    rho = batch.rho
    masked = rhs / (batch.mask * batch.mask + rho)
    sr = (rhs - _upsample2(F.avg_pool2d(rhs, 2)) * (0.25 / (rho + 0.25))) / rho
    return torch.where(batch.is_sr, sr, masked)


def admm_start(batch: PeerBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z⁰ = A⁺y, Aᵀy)``: mask pinv ``y/m`` where m ≠ 0 (else 0), SR pinv ``up(y)``; adjoints
    ``m ⊙ y`` and ``up(y)/4``."""
    m = batch.mask
    nonzero = m != 0
    pinv_mask = torch.where(nonzero, batch.y_full / torch.where(nonzero, m, torch.ones_like(m)),
                            torch.zeros_like(m))
    up = _upsample2(batch.y_low)
    z0 = torch.where(batch.is_sr, up, pinv_mask)
    aty = torch.where(batch.is_sr, up * 0.25, m * batch.y_full)
    return z0, aty


def unrolled_admm(net: nn.Module, batch: PeerBatch, num_iters: int) -> torch.Tensor:
    """``z_T`` (B, C, H, W) after ``num_iters`` ADMM iterations with prior
    ``P(v) = net(2v − 1)/2 + 0.5`` (tied weights)."""
    z, aty = admm_start(batch)
    u = torch.zeros_like(z)
    for _ in range(int(num_iters)):
        x = net(2.0 * (z + u) - 1.0) / 2.0 + 0.5
        z = data_step(batch, aty + batch.rho * (x - u))
        u = u + z - x
    return z


def du_admm_loss(net: nn.Module, batch: PeerBatch, num_iters: int,
                 loss: str = "mse") -> torch.Tensor:
    """Scalar loss: mean over the batch of 4·MSE(z_T, x*) (``"mse"``, the paper), or of
    ``10·log10(MSE + 1e-12)`` in [0, 1] (``"psnr"``: minus the mean PSNR in dB)."""
    z = unrolled_admm(net, batch, num_iters)
    per_sample = 4.0 * torch.mean(torch.square(z - batch.images), dim=(1, 2, 3))
    if loss == "psnr":
        return torch.mean(10.0 * torch.log10(per_sample / 4.0 + 1e-12))
    if loss == "mse":
        return torch.mean(per_sample)
    raise ValueError(f"loss must be 'mse' or 'psnr', got {loss!r}")


# ------------------------------------------------------------------------------- the step
def make_optimizer(net: nn.Module, cfg: Any) -> torch.optim.Adam:
    """Adam with the config's learning rate, (β₁, β₂) and ε (ε added to √v̂, as optax)."""
    return torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2),
                            eps=cfg.eps)


def clip_and_update(net: nn.Module, opt: torch.optim.Optimizer, grad_clip: float) -> None:
    """Element-wise value clipping of every gradient to ±``grad_clip``, then one Adam step."""
    torch.nn.utils.clip_grad_value_(net.parameters(), grad_clip)
    opt.step()


def loss_and_grads(net: nn.Module, batch: PeerBatch, cfg: Any
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and unclipped gradients (keyed by parameter name) at the current weights."""
    net.zero_grad(set_to_none=True)
    loss = du_admm_loss(net, batch, cfg.num_iters, cfg.loss)
    loss.backward()
    return float(loss.detach()), {k: p.grad.detach().clone() for k, p in net.named_parameters()}


def make_train_step(net: nn.Module, cfg: Any, *, compile: bool = False
                    ) -> Callable[[PeerBatch], torch.Tensor]:
    """``step(batch) -> loss`` (detached scalar at the weights before the update): forward
    through T iterations, backward, clip, Adam — updating ``net`` in place.

    ``compile=True`` wraps the loss (forward through all T iterations; its backward is compiled
    by AOTAutograd) in ``torch.compile``; clipping and Adam run eagerly. The first call
    compiles.
    """
    opt = make_optimizer(net, cfg)
    loss_fn = lambda b: du_admm_loss(net, b, cfg.num_iters, cfg.loss)  # noqa: E731
    if compile:
        loss_fn = torch.compile(loss_fn)

    def step(batch: PeerBatch) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        loss.backward()
        clip_and_update(net, opt, cfg.grad_clip)
        return loss.detach()

    return step


def count_params(net: nn.Module) -> int:
    """Number of scalar parameters."""
    return int(sum(math.prod(p.shape) for p in net.parameters()))


if __name__ == "__main__":
    raise SystemExit("torch_peer.py is a module: run benchmarks/bench_vs_torch.py (timings) or "
                     "pytest tests/test_torch_peer.py (equality with admm_jax's step)")
