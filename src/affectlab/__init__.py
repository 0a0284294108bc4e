"""affectlab: learning facial behaviour (AUs, expressions, valence/arousal, attributes) from partly labelled data."""

__version__ = "0.1.0"
