"""The bounds a configuration's values must respect (checked by :func:`sharing_lab.config.check` before anything
is made): minimums, maximums of the work a user sets (the paper's longest search is 600 epochs), choices, and the
ranges of the numbers torch and numpy take."""

from __future__ import annotations

AT_LEAST = {
    "data.batch_size": 1, "data.reward_batch_size": 1, "data.eval_batch_size": 1, "data.calibration_images": 1,
    "data.eval_images": 1, "data.workers": 0, "search.epochs": 1, "search.warmup_epochs": 0,
    "search.controller_hidden": 1, "search.eval_every": 1, "search.eval_archs": 1, "search.beam_top": 1,
    "search.prob_samples": 1, "search.gt_every": 1, "search.gt_archs": 8, "sharing.transition_every": 1,
    "probes.every_steps": 0, "probes.every_epochs": 1,
    "probes.align_archs": 2, "probes.probe_batch": 1, "retrain.epochs": 1, "retrain.batch_size": 1,
    "search.lr": 0.0, "search.controller_lr": 0.0, "search.entropy_weight": 0.0,
    "search.weight_decay": 0.0, "retrain.lr": 0.0, "retrain.weight_decay": 0.0, "runtime.threads": 1,
    "search.momentum": 0.0, "retrain.momentum": 0.0, "data.train_images": 1, "data.image_size": 1,
}
AT_MOST = {"search.epochs": 100_000, "retrain.epochs": 100_000, "search.eval_archs": 100_000,
           "search.beam_top": 10_000, "search.prob_samples": 1_000_000, "data.image_size": 4096}
MAX_WIDTH = 1 << 16  # channels of one candidate
FLOAT32_MAX = 3.4028234663852886e38  # training computes in float32 (or bfloat16, whose range is float32's)
SEED_BITS = 63  # seeds are torch and numpy seeds: at most 2**63 - 1
CHOICES = {"search.lr_schedule": ("cosine", "step"),
           "search.bn_evaluation": ("recalibrated", "batch"),
           "runtime.precision": ("auto", "fp32", "bf16"),
           "runtime.memory_format": ("auto", "contiguous", "channels_last")}
