"""Evaluation: Table 1 (PSNR / iterations), Table 2 (pictures), convergence curves."""

from admm_jax.evaluate.harness import (
    EvalConfig,
    Method,
    custom_method,
    du_admm_method,
    methods_from_weights,
    onenet_method,
    params_digest,
    run_evaluation,
    wavelet_method,
)
from admm_jax.evaluate.report import TABLE_KEYS, markdown_table, read_per_image_csv, summarize

__all__ = ["EvalConfig", "Method", "custom_method", "du_admm_method", "methods_from_weights", "onenet_method",
           "params_digest", "run_evaluation", "wavelet_method", "TABLE_KEYS", "markdown_table",
           "read_per_image_csv", "summarize"]
