"""The synthetic faces every layout writer lays out: drawn by the synthetic benchmark's story
(:mod:`affectlab.data.sources.synthetic.story`), with the labels a real release would hold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectlab.data.sources.synthetic.story import (
    GenerationParams,
    ImageLabels,
    rng_for,
    sample_image,
    sample_subject,
)


@dataclass(frozen=True)
class LayoutFace:
    """One synthetic face for a real dataset's layout writer (``data/layouts/<name>.py``).

    Attributes:
        image: uint8 (H, W, 3).
        subject: 0-based identity number (faces of one subject share a face).
        index: the face's number within its subject (0-based).
        labels: expression, AU intensities (0 = absent, every supported AU), the annotated AU
            labels (1 / 0 / UNKNOWN = 999 for occluded), valence and arousal.
        glasses: whether the identity wears glasses (an attribute for CelebA-style layouts).
    """

    image: np.ndarray
    subject: int
    index: int
    labels: ImageLabels
    glasses: bool


def layout_faces(num_subjects: int, images_per_subject: int, *, seed: int = 0,
                 image_size: int = 64) -> list[LayoutFace]:
    """Synthetic faces drawn by the benchmark's story (default nuisances and label noise), for
    writing fixture trees in the layouts of real datasets. Deterministic in ``seed``."""
    params = GenerationParams(
        seed=seed, image_size=image_size, num_subjects_train=num_subjects,
        images_per_subject_train=images_per_subject, num_subjects_unlabeled=0,
        images_per_subject_unlabeled=0, num_subjects_val=0, images_per_subject_val=0,
        num_subjects_test=0, images_per_subject_test=0, rotation_deg=5.0, scale_jitter=0.05,
        shift_jitter=0.03, yaw_jitter=0.3, illumination=0.3, noise_std=0.02, clutter=3,
        occlusion_prob=0.15, label_noise=0.0, spontaneous_au_rate=0.03, blink_rate=0.06,
        intensity_alpha=2.0, intensity_beta=2.0, va_noise=0.12, au_effect_scale=1.0)
    faces = []
    for s in range(num_subjects):
        subject = sample_subject(rng_for(params, "train", s, 0))
        for k in range(images_per_subject):
            image, labels = sample_image(rng_for(params, "train", s, k + 1), subject, params)
            faces.append(LayoutFace(image, s, k, labels, bool(subject.face.glasses)))
    return faces


__all__ = ["LayoutFace", "layout_faces"]
