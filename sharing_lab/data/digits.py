"""scikit-learn's digits (1797 8×8 greyscale images, shipped inside scikit-learn): the embedded default."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import register_dataset
from .bundle import DataBundle, Split


def digits_bundle(image_size: int | None = None) -> DataBundle:
    """scikit-learn's digits, fixed stratified 1078/359/360 split (random_state 0), scalar train mean/std."""
    from sklearn.datasets import load_digits  # 0.65 s to import: paid by the runs on digits, not by every start
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.images.astype(np.float64), d.target.astype(np.int64)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, random_state=0, stratify=y)
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def split(xs: np.ndarray, ys: np.ndarray) -> Split:
        t = torch.from_numpy((xs - mean) / std).float().unsqueeze(1)
        if image_size not in (None, 8):  # bilinear weights sum to 1, so normalising first is the same
            t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return Split(t.contiguous(), torch.from_numpy(ys))

    return DataBundle("digits", 10, split(x_tr, y_tr), split(x_va, y_va), split(x_te, y_te))



@register_dataset("digits")
def digits(directory: str | None, seed: int, image_size: int | None, workers: int) -> DataBundle:
    """scikit-learn's digits, fixed stratified 1078/359/360 split, 8×8 (the embedded default)."""
    return digits_bundle(image_size)
