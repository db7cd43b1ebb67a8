"""End-to-end training of the DU-ADMM prior (see :mod:`admm_jax.train.loop`)."""

from admm_jax.train.checkpoint import Checkpointer, CheckpointError
from admm_jax.train.config import TrainConfig, preset
from admm_jax.train.loop import (OutputExistsError, Validator, load_prior, prepare_output_dir,
                                 provenance_record, train)
from admm_jax.train.optim import make_optimizer
from admm_jax.train.step import (
    TrainState,
    check_batch_divides,
    du_admm_loss,
    init_train_state,
    make_mesh,
    make_train_step,
    shard_batch,
)

__all__ = [
    "Checkpointer", "CheckpointError", "TrainConfig", "preset", "OutputExistsError", "Validator",
    "load_prior", "prepare_output_dir", "provenance_record", "train", "make_optimizer",
    "TrainState", "check_batch_divides", "du_admm_loss", "init_train_state", "make_mesh",
    "make_train_step", "shard_batch",
]
