"""Layouts: writers of each dataset's real on-disk layout (synthetic faces written as the release
has its files), for tests, fixtures and demos; one module per dataset (:mod:`.faces`: the faces
they write). The readers live in :mod:`affectlab.data.sources`; layouts import from sources,
never the reverse."""
