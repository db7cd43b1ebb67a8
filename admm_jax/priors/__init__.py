"""Priors: the DU-ADMM prior / OneNet projector, OneNet discriminators and their layers, a
small residual U-Net prior (not in the paper); and the test-time self-ensemble of any prox.

Networks work in the [−1, 1] image domain; :func:`make_prior_fn` wraps a projector as a pure
function of ``(params, image in [0, 1])`` for the ADMM solver.
"""

from admm_jax.priors.build import PRIOR_ARCHITECTURES, build_prior_network, image_size_multiple
from admm_jax.priors.conv import conv2d, flax_conv_general_dilated
from admm_jax.priors.ensemble import ENSEMBLES, self_ensemble
from admm_jax.priors.functional import (
    count_params,
    from_network_domain,
    make_prior_fn,
    to_network_domain,
)
from admm_jax.priors.layers import (
    ACTIVATIONS,
    INIT_STDDEV,
    NORMS,
    RESIZE_MODES,
    Bottleneck,
    ChannelWiseDense,
    Conv2D,
    Deconv2D,
    Dense,
    InstanceNorm,
    VirtualBatchNorm,
    elu_like,
    get_activation,
    make_norm,
    resize_index_map,
    resize_nearest,
    truncated_normal_init,
)
from admm_jax.priors.networks import (
    PRIOR_PARAM_COUNT,
    ImageDiscriminator,
    LatentDiscriminator,
    ProjectionNetwork,
    du_admm_prior,
    onenet_discriminators,
    onenet_projector,
    scale_channels,
)
from admm_jax.priors.unet import ResidualUNet, unet_prior

__all__ = [
    # networks
    "ProjectionNetwork", "ImageDiscriminator", "LatentDiscriminator",
    "du_admm_prior", "onenet_projector", "onenet_discriminators",
    "scale_channels", "PRIOR_PARAM_COUNT",
    "ResidualUNet", "unet_prior",
    # a network by architecture name (training configs, saved metadata, shipped priors)
    "build_prior_network", "PRIOR_ARCHITECTURES", "image_size_multiple",
    # test-time self-ensemble
    "self_ensemble", "ENSEMBLES",
    # bridge
    "make_prior_fn", "count_params", "to_network_domain", "from_network_domain",
    # layers
    "conv2d", "flax_conv_general_dilated",
    "resize_index_map", "resize_nearest", "elu_like", "get_activation", "truncated_normal_init",
    "Conv2D", "Deconv2D", "InstanceNorm", "VirtualBatchNorm", "make_norm", "ChannelWiseDense",
    "Dense", "Bottleneck", "RESIZE_MODES", "ACTIVATIONS", "NORMS", "INIT_STDDEV",
]
