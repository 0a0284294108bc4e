"""Dataset sources: one module per dataset, each parsing its real on-disk layout into
:class:`affectlab.data.contract.FaceData` (:mod:`affectlab.data.sources.on_disk` holds what
they share); the synthetic benchmark lives in :mod:`affectlab.data.sources.synthetic`."""
