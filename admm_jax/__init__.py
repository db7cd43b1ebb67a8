"""admm_jax: differentiable unrolled ADMM (DU-ADMM OneNet) and classical ADMM in JAX."""

__version__ = "0.1.0"
