"""Baselines: the original OneNet's pre-training noise family and adversarial objective."""

from admm_jax.baselines.onenet_losses import (
    OneNetLossWeights,
    Tf1AdamState,
    clamp_weights,
    is_kernel,
    mean_sigmoid_cross_entropy,
    onenet_discriminator_loss,
    onenet_optimizers,
    onenet_projector_loss,
    scale_by_tf1_adam,
    sigmoid_cross_entropy,
)
from admm_jax.baselines.onenet_noise import (
    NEAREST_MODES,
    bicubic_upsample,
    bicubic_weight_table,
    blocky_image,
    blocky_index_table,
    expected_map_power,
    keys_cubic,
    max_map_size,
    nearest_indices,
    onenet_noise,
)

__all__ = [
    "onenet_noise", "blocky_image", "blocky_index_table", "nearest_indices", "NEAREST_MODES",
    "bicubic_upsample", "bicubic_weight_table", "keys_cubic", "max_map_size", "expected_map_power",
    "OneNetLossWeights", "sigmoid_cross_entropy", "mean_sigmoid_cross_entropy",
    "onenet_projector_loss", "onenet_discriminator_loss",
    "onenet_optimizers", "scale_by_tf1_adam", "Tf1AdamState", "clamp_weights", "is_kernel",
]

from admm_jax.baselines.onenet_train import (  # noqa: E402
    OneNetConfig,
    OneNetState,
    draw_reference_batch,
    load_projector,
    load_reference_batch,
    make_pretrain_step,
    pretrain_onenet,
)

__all__ += ["OneNetConfig", "OneNetState", "draw_reference_batch", "load_projector",
            "load_reference_batch", "make_pretrain_step", "pretrain_onenet"]
