"""Dataset modules: one per dataset, all producing :class:`affectlab.datasets.base.FaceData`."""
