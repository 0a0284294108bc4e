"""The embedded synthetic benchmark: rendered faces (:mod:`.faces`) with known AU, expression
and valence/arousal labels, written once into ``dataset.root`` (:mod:`.benchmark`)."""
