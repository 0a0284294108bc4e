"""Data: the contract every dataset fulfils (:mod:`.contract`), the pipeline pieces a batch
passes through (:mod:`.transforms`, :mod:`.samplers`, :mod:`.packed`, :mod:`.preprocess`),
face geometry (:mod:`.faces`) and the dataset sources (:mod:`.sources`)."""
