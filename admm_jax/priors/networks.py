"""The DU-ADMM prior / OneNet projector and the OneNet discriminators (Flax NNX).

All networks here work in the **[−1, 1] image domain**: they take images ``2·x − 1`` (x in [0, 1])
and the projector returns an *unbounded* output that is interpreted as [−1, 1] (no tanh, no clip).
The mapping from and to the [0, 1] domain used by the ADMM solver lives in
:mod:`admm_jax.priors.functional` (:func:`~admm_jax.priors.functional.make_prior_fn`).

Architecture facts follow ``original_code_spec.md`` §1.2–§1.4; see :mod:`.layers` for the layer
semantics (NN-resize + stride-1 convs, TF 'SAME' padding, init std 0.005).

Virtual batch norm (``norm="virtual_batch"``) needs a reference batch: pass it as
``reference=`` to ``__call__`` / :meth:`ProjectionNetwork.project` (it is appended to the batch,
run through the whole network and sliced off again), or use the low-level ``n_reference=``
arguments where the last ``n_reference`` rows of the input already are the reference batch.
With instance norm the reference is ignored (instance statistics never mix samples).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from admm_jax.priors.layers import (
    ACTIVATIONS,
    NORMS,
    RESIZE_MODES,
    Bottleneck,
    ChannelWiseDense,
    Conv2D,
    Deconv2D,
    Dense,
    get_activation,
    make_norm,
)

__all__ = [
    "scale_channels",
    "ProjectionNetwork",
    "ImageDiscriminator",
    "LatentDiscriminator",
    "du_admm_prior",
    "onenet_projector",
    "onenet_discriminators",
    "PRIOR_PARAM_COUNT",
]

#: Parameter count of the full-size (width 1) DU-ADMM prior / OneNet projector (spec §1.2).
PRIOR_PARAM_COUNT = 22_431_363


def scale_channels(channels: int, width: float) -> int:
    """Hidden channel count ``round(channels · width)``, at least 1."""
    return max(1, int(round(channels * float(width))))


def _check_options(resize_mode: str, activation: str, norm: str) -> None:
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _check_compute_dtype(compute_dtype):
    dt = jnp.dtype(compute_dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16),
                  jnp.dtype(jnp.float64)):
        raise ValueError(f"compute_dtype must be a float dtype, got {dt}")
    return dt


def _with_reference(x: jax.Array, reference: jax.Array | None, norm: str):
    """Append the reference batch for virtual batch norm; returns (batch, n_reference)."""
    if reference is None or norm != "virtual_batch":
        return x, 0
    reference = jnp.asarray(reference)
    if reference.shape[1:] != x.shape[1:]:
        raise ValueError(f"reference batch has shape {reference.shape}, expected (n,) + "
                         f"{tuple(x.shape[1:])}")
    return jnp.concatenate([x, reference.astype(x.dtype)], axis=0), reference.shape[0]


def _no_keep(name, h):
    del name
    return h


def _zero_params(module: nnx.Module) -> None:
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param):
            var[...] = jnp.zeros_like(var[...])


class ProjectionNetwork(nnx.Module):
    """The 12-layer OneNet projector, which is also the DU-ADMM prior ``p(θ, ·)``.

    Layers (spec §1.2; channels shown at ``width=1``; ``/s`` = NN-resize ×½ then conv with the
    halved kernel, ``↑`` = NN-resize ×2 then conv with the full kernel):

    ====  ==========  =========================  ==================  =====  =================
    #     name        op                         channels            H×W    followed by
    ====  ==========  =========================  ==================  =====  =================
    1     conv0       conv 4×4                   3→64                64     norm bn0, act
    2     conv1       conv 4×4                   64→128              64     norm bn1, act
    3     conv2       /2 + conv 2×2              128→256             32     norm bn2, act
    4     conv3       /2 + conv 2×2              256→512             16     norm bn3, act
    5     conv4       /2 + conv 2×2              512→1024            8      norm bn4, act
    6     fc5         channel-wise dense, no b.  1024→1024 (64×64)   8      —
    7     conv_fc     conv 2×2                   1024→1024           8      norm latent_norm,
                                                                            act → *latent*
    8     deconv3     ↑16 + conv 4×4             1024→512            16     norm debn3, act
    9     deconv2     ↑32 + conv 4×4             512→256             32     norm debn2, act
    10    deconv1     ↑64 + conv 4×4             256→128             64     norm debn1, act
    11    deconv0     conv 4×4                   128→64              64     norm debn0, act
    12    recon       conv 4×4                   64→3                64     — (linear)
    ====  ==========  =========================  ==================  =====  =================

    ``width`` multiplies every hidden channel count (64·w, 128·w, …, 1024·w, rounded); the input
    and output keep ``image_channels`` channels and the latent stays ``image_size/8`` square, so
    the channel-wise dense layer is ``(C_latent, 64, 64)``. At width 1 the network has exactly
    22,431,363 parameters (:data:`PRIOR_PARAM_COUNT`).

    Parameters
    ----------
    width: channel multiplier (float > 0).
    resize_mode: ``"custom"`` (DU-ADMM) or ``"tf_legacy"`` (OneNet); see
        :func:`~admm_jax.priors.layers.resize_index_map`.
    activation: ``"elu_like"`` (DU-ADMM, softplus(2x+2)/2−1) or ``"elu"`` (OneNet).
    norm: ``"instance"`` or ``"virtual_batch"`` (original OneNet).
    compute_dtype: dtype of the convolutions and matmuls (``jnp.float32`` or ``jnp.bfloat16``).
        Parameters stay float32, normalisation runs in float32 and the output is float32.
    image_size, image_channels: input geometry (default 64×64×3; ``image_size`` must be a
        multiple of 8).
    rngs: ``nnx.Rngs`` used for the weight initialisation.
    residual: **not in the paper** (default False). If True the network predicts a correction:
        ``P(x) = x + recon(...)`` with the last layer initialised to zero, so it starts as the
        identity. Same parameter count. Useful when only a short training budget is available
        (the paper's bottleneck autoencoder needs tens of thousands of steps to pass its input
        through faithfully).
    gated: **not in the paper** (default False; needs ``residual=True``). The last layer emits
        ``2·image_channels`` maps, a correction ``r`` and gate logits ``g``, and
        ``P(x) = x + sigmoid(g) ⊙ r``. Why: every hidden layer ends in instance norm, so each
        channel reaching ``recon`` has unit variance whatever the input; with the few channels
        of a CPU-width prior the plain residual correction therefore has about the same energy
        for a clean image as for one with holes (measured: RMS 0.050 on clean faces vs 0.058
        on blockwise-inpainting starts), which pulls super-resolution below its start. The
        sigmoid gate can switch the correction off per pixel. Adds ``16·c64·C + C`` parameters.

    Domain: input and output are in the [−1, 1] image domain (output unbounded).
    """

    def __init__(self, *, width: float = 1.0, resize_mode: str = "custom",
                 activation: str = "elu_like", norm: str = "instance",
                 compute_dtype=jnp.float32, image_size: int = 64, image_channels: int = 3,
                 residual: bool = False, gated: bool = False, rngs: nnx.Rngs):
        _check_options(resize_mode, activation, norm)
        if not float(width) > 0:
            raise ValueError(f"width must be positive, got {width}")
        if image_size % 8 != 0:
            raise ValueError(f"image_size must be a multiple of 8, got {image_size}")
        self.width = float(width)
        self.resize_mode, self.activation, self.norm = resize_mode, activation, norm
        self.compute_dtype = _check_compute_dtype(compute_dtype)
        self.image_size, self.image_channels = int(image_size), int(image_channels)
        c64, c128, c256, c512, c1024 = (scale_channels(c, width) for c in (64, 128, 256, 512, 1024))
        self.latent_channels = c1024
        self.latent_size = self.image_size // 8

        conv = dict(resize_mode=resize_mode, compute_dtype=self.compute_dtype, rngs=rngs)
        n = lambda c: make_norm(norm, c, rngs=rngs)  # noqa: E731
        # encoder
        self.conv0 = Conv2D(image_channels, c64, 4, **conv)
        self.bn0 = n(c64)
        self.conv1 = Conv2D(c64, c128, 4, **conv)
        self.bn1 = n(c128)
        self.conv2 = Conv2D(c128, c256, 4, stride=2, **conv)
        self.bn2 = n(c256)
        self.conv3 = Conv2D(c256, c512, 4, stride=2, **conv)
        self.bn3 = n(c512)
        self.conv4 = Conv2D(c512, c1024, 4, stride=2, **conv)
        self.bn4 = n(c1024)
        self.fc5 = ChannelWiseDense(c1024, self.latent_size ** 2, use_bias=False,
                                    compute_dtype=self.compute_dtype, rngs=rngs)
        self.conv_fc = Conv2D(c1024, c1024, 2, **conv)
        self.latent_norm = n(c1024)
        # decoder
        self.deconv3 = Deconv2D(c1024, c512, 4, stride=2, **conv)
        self.debn3 = n(c512)
        self.deconv2 = Deconv2D(c512, c256, 4, stride=2, **conv)
        self.debn2 = n(c256)
        self.deconv1 = Deconv2D(c256, c128, 4, stride=2, **conv)
        self.debn1 = n(c128)
        self.deconv0 = Deconv2D(c128, c64, 4, stride=1, **conv)
        self.debn0 = n(c64)
        if gated and not residual:
            raise ValueError("gated=True needs residual=True (the gate scales the correction)")
        self.residual, self.gated = bool(residual), bool(gated)
        self.recon = Deconv2D(c64, image_channels * (2 if self.gated else 1), 4, stride=1, **conv)
        if self.residual:  # start as the identity map
            _zero_params(self.recon)

    # -- low level: the last n_reference rows are the VBN reference batch ---------------------

    def _check_image(self, x: jax.Array) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.image_size, self.image_size,
                                                 self.image_channels):
            raise ValueError(f"expected images of shape (B, {self.image_size}, {self.image_size}, "
                             f"{self.image_channels}), got {x.shape}")

    def _encode_layers(self, x, r, keep=_no_keep):
        act = get_activation(self.activation)
        h = keep("conv0", act(self.bn0(self.conv0(x), r)))
        h = keep("conv1", act(self.bn1(self.conv1(h), r)))
        h = keep("conv2", act(self.bn2(self.conv2(h), r)))
        h = keep("conv3", act(self.bn3(self.conv3(h), r)))
        h = keep("conv4", act(self.bn4(self.conv4(h), r)))
        h = keep("fc5", self.fc5(h))
        return keep("conv_fc", act(self.latent_norm(self.conv_fc(h), r)))

    def _decode_layers(self, latent, r, keep=_no_keep):
        act = get_activation(self.activation)
        h = keep("deconv3", act(self.debn3(self.deconv3(latent), r)))
        h = keep("deconv2", act(self.debn2(self.deconv2(h), r)))
        h = keep("deconv1", act(self.debn1(self.deconv1(h), r)))
        h = keep("deconv0", act(self.debn0(self.deconv0(h), r)))
        return keep("recon", self.recon(h).astype(jnp.float32))

    # -- public API --------------------------------------------------------------------------

    def encode(self, x: jax.Array, *, n_reference: int = 0) -> jax.Array:
        """Encoder E: images ``(B, 64, 64, 3)`` in [−1, 1] → latent ``(B, 8, 8, C_latent)``.

        The latent is the output of ``conv_fc`` + norm + activation (the input of the OneNet
        latent discriminator). ``n_reference``: see the module docstring (VBN only).
        """
        self._check_image(x)
        return self._encode_layers(x, n_reference).astype(jnp.float32)

    def decode(self, latent: jax.Array, *, n_reference: int = 0) -> jax.Array:
        """Decoder: latent ``(B, 8, 8, C_latent)`` → image ``(B, 64, 64, 3)`` in the [−1, 1]
        domain (unbounded, float32)."""
        expected = (self.latent_size, self.latent_size, self.latent_channels)
        if latent.ndim != 4 or tuple(latent.shape[1:]) != expected:
            raise ValueError(f"expected latents of shape (B,) + {expected}, got {latent.shape}")
        return self._decode_layers(latent, n_reference)

    def project(self, x: jax.Array, reference: jax.Array | None = None):
        """``(P(x), E(x))``: projection and latent of images in [−1, 1] in one pass.

        ``reference`` (VBN only): a reference batch of images that is appended, run through the
        network and dropped from both outputs.
        """
        self._check_image(x)
        batch = x.shape[0]
        xr, n_ref = _with_reference(x, reference, self.norm)
        latent = self._encode_layers(xr, n_ref)
        y = self._decode_layers(latent, n_ref)
        if self.gated:
            correction, gate_logits = jnp.split(y, 2, axis=-1)
            y = xr.astype(jnp.float32) + jax.nn.sigmoid(gate_logits) * correction
        elif self.residual:
            y = y + xr.astype(jnp.float32)
        return y[:batch], latent[:batch].astype(jnp.float32)

    def __call__(self, x: jax.Array, reference: jax.Array | None = None) -> jax.Array:
        """``P(x) = decode(encode(x))`` for images ``(B, 64, 64, 3)`` in the [−1, 1] domain;
        returns float32 ``(B, 64, 64, 3)``, interpreted as [−1, 1] but not clipped."""
        return self.project(x, reference)[0]

    def intermediates(self, x: jax.Array) -> dict[str, jax.Array]:
        """Outputs of all 12 layers (after their norm + activation where they have one), keyed
        by the reference's layer names ``conv0 … conv4, fc5, conv_fc, deconv3 … deconv0, recon``.
        """
        self._check_image(x)
        out: dict[str, jax.Array] = {}

        def keep(name, h):
            out[name] = h
            return h

        self._decode_layers(self._encode_layers(x, 0, keep), 0, keep)
        return out

    def store_reference_statistics(self, reference: jax.Array) -> None:
        """VBN only: run the reference batch alone and store its per-layer statistics for
        inference (the original ``update_popmean.py``). Call eagerly or under ``nnx.jit``."""
        if self.norm != "virtual_batch":
            raise ValueError("store_reference_statistics needs norm='virtual_batch'")
        self._check_image(reference)
        latent = self._encode_layers(reference, reference.shape[0])
        self._decode_layers(latent, reference.shape[0])


class ImageDiscriminator(nnx.Module):
    """OneNet image-space discriminator D (spec §1.4): images in [−1, 1] → one logit each.

    conv1 4×4 (3→64·w, with bias, no norm/act) → 4 modules of pre-activation bottlenecks
    (``blocks=(3, 4, 6, 3)``; the first block of each module has stride 2 and doubles the
    channels: 128, 256, 512, 1024 (×w); pixels 32, 16, 8, 4) → norm + act → dense
    (4·4·1024·w → 1). Returns float32 logits of shape ``(B, 1)``.
    """

    def __init__(self, *, width: float = 1.0, blocks: Sequence[int] = (3, 4, 6, 3),
                 norm: str = "instance", activation: str = "elu", resize_mode: str = "tf_legacy",
                 compute_dtype=jnp.float32, image_size: int = 64, image_channels: int = 3,
                 residual: bool = False, gated: bool = False, rngs: nnx.Rngs):
        _check_options(resize_mode, activation, norm)
        self.width = float(width)
        self.norm, self.activation, self.resize_mode = norm, activation, resize_mode
        self.compute_dtype = _check_compute_dtype(compute_dtype)
        self.image_size, self.image_channels = int(image_size), int(image_channels)
        if self.image_size % (2 ** len(blocks)) != 0:
            raise ValueError(f"image_size {image_size} is not divisible by 2**{len(blocks)}")
        kw = dict(resize_mode=resize_mode, compute_dtype=self.compute_dtype, rngs=rngs)
        c = scale_channels(64, width)
        self.conv1 = Conv2D(image_channels, c, 4, **kw)
        layers = []
        for n_blocks in blocks:
            layers.append(Bottleneck(c, stride=2, norm=norm, activation=activation, **kw))
            c *= 2
            for _ in range(int(n_blocks) - 1):
                layers.append(Bottleneck(c, stride=1, norm=norm, activation=activation, **kw))
        self.blocks = nnx.List(layers)
        self.final_norm = make_norm(norm, c, rngs=rngs)
        spatial = self.image_size // 2 ** len(blocks)
        self.dense = Dense(spatial * spatial * c, 1, compute_dtype=self.compute_dtype, rngs=rngs)

    def forward(self, x: jax.Array, *, n_reference: int = 0) -> jax.Array:
        """Logits ``(B, 1)`` for every row of ``x`` (last ``n_reference`` rows: VBN reference)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.image_size, self.image_size,
                                                 self.image_channels):
            raise ValueError(f"expected images (B, {self.image_size}, {self.image_size}, "
                             f"{self.image_channels}), got {x.shape}")
        act = get_activation(self.activation)
        h = self.conv1(x)
        for block in self.blocks:
            h = block(h, n_reference)
        h = act(self.final_norm(h, n_reference))
        return self.dense(h)

    def __call__(self, x: jax.Array, reference: jax.Array | None = None) -> jax.Array:
        """Logits ``(B, 1)`` for images in [−1, 1]; ``reference``: VBN reference images."""
        batch = x.shape[0]
        xr, n_ref = _with_reference(x, reference, self.norm)
        return self.forward(xr, n_reference=n_ref)[:batch]


class LatentDiscriminator(nnx.Module):
    """OneNet latent-space discriminator D_l (spec §1.4): projector latents → one logit each.

    Input ``(B, 8, 8, C)`` with ``C = latent_channels`` (default ``1024·w``, i.e. the projector's
    latent channels at the same width). Blocks 0–2: bottleneck stride 1; block 3: bottleneck
    stride 2 with C output channels and a 1×1 conv shortcut (8 → 4 px); blocks 4, 5: stride 1;
    norm + act; dense (4·4·C → 1). Returns float32 logits ``(B, 1)``.
    """

    def __init__(self, *, width: float = 1.0, latent_channels: int | None = None,
                 latent_size: int = 8, norm: str = "instance", activation: str = "elu",
                 resize_mode: str = "tf_legacy", compute_dtype=jnp.float32, rngs: nnx.Rngs):
        _check_options(resize_mode, activation, norm)
        self.width = float(width)
        self.norm, self.activation, self.resize_mode = norm, activation, resize_mode
        self.compute_dtype = _check_compute_dtype(compute_dtype)
        c = int(latent_channels) if latent_channels is not None else scale_channels(1024, width)
        self.latent_channels, self.latent_size = c, int(latent_size)
        kw = dict(norm=norm, activation=activation, resize_mode=resize_mode,
                  compute_dtype=self.compute_dtype, rngs=rngs)
        layers = [Bottleneck(c, stride=1, **kw) for _ in range(3)]
        layers.append(Bottleneck(c, c, stride=2, **kw))
        layers += [Bottleneck(c, stride=1, **kw) for _ in range(2)]
        self.blocks = nnx.List(layers)
        self.final_norm = make_norm(norm, c, rngs=rngs)
        spatial = self.latent_size // 2
        self.dense = Dense(spatial * spatial * c, 1, compute_dtype=self.compute_dtype, rngs=rngs)

    def forward(self, z: jax.Array, *, n_reference: int = 0) -> jax.Array:
        """Logits ``(B, 1)`` for every row of ``z`` (last ``n_reference`` rows: VBN reference)."""
        expected = (self.latent_size, self.latent_size, self.latent_channels)
        if z.ndim != 4 or tuple(z.shape[1:]) != expected:
            raise ValueError(f"expected latents (B,) + {expected}, got {z.shape}")
        act = get_activation(self.activation)
        h = z
        for block in self.blocks:
            h = block(h, n_reference)
        h = act(self.final_norm(h, n_reference))
        return self.dense(h)

    def __call__(self, z: jax.Array, reference: jax.Array | None = None) -> jax.Array:
        """Logits ``(B, 1)``; ``reference``: VBN reference latents."""
        batch = z.shape[0]
        zr, n_ref = _with_reference(z, reference, self.norm)
        return self.forward(zr, n_reference=n_ref)[:batch]


# ------------------------------------------------------------------------------------------------
# Factories
# ------------------------------------------------------------------------------------------------

def _require_rngs(rngs):
    if rngs is None:
        raise TypeError("rngs is required, e.g. rngs=nnx.Rngs(0)")
    return rngs


def du_admm_prior(width: float = 1.0, rngs: nnx.Rngs | None = None, **overrides
                  ) -> ProjectionNetwork:
    """The DU-ADMM prior as the released ``train.py`` builds it: instance norm, elu-like
    activation, custom NN resize (spec §1.2, bug B1). ``overrides`` go to
    :class:`ProjectionNetwork` (e.g. ``compute_dtype=jnp.bfloat16``)."""
    cfg = dict(resize_mode="custom", activation="elu_like", norm="instance")
    cfg.update(overrides)
    return ProjectionNetwork(width=width, rngs=_require_rngs(rngs), **cfg)


def onenet_projector(width: float = 1.0, rngs: nnx.Rngs | None = None, norm: str = "instance",
                     **overrides) -> ProjectionNetwork:
    """The OneNet projector (spec §1.3): ELU, TF-legacy NN resize, instance norm (srph25's
    baseline) or ``norm="virtual_batch"`` (original OneNet)."""
    cfg = dict(resize_mode="tf_legacy", activation="elu", norm=norm)
    cfg.update(overrides)
    return ProjectionNetwork(width=width, rngs=_require_rngs(rngs), **cfg)


def onenet_discriminators(width: float = 1.0, rngs: nnx.Rngs | None = None,
                          norm: str = "instance", **overrides
                          ) -> tuple[ImageDiscriminator, LatentDiscriminator]:
    """``(ImageDiscriminator, LatentDiscriminator)`` matching :func:`onenet_projector` at the
    same ``width`` (ELU, TF-legacy resize by default)."""
    rngs = _require_rngs(rngs)
    cfg = dict(activation="elu", resize_mode="tf_legacy", norm=norm)
    cfg.update(overrides)
    return ImageDiscriminator(width=width, rngs=rngs, **cfg), LatentDiscriminator(
        width=width, rngs=rngs, **cfg)
