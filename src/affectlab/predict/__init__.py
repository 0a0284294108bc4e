"""Using trained runs on new pictures: ``affectlab-predict INPUT --runs RUN_DIR --out FILE.csv``.

:mod:`.media` reads images, folders and videos; :mod:`.faces` cuts faces as a run's training
data were cut; :mod:`.runs` predicts with one run or the mean of several; :mod:`.table` writes
OpenFace-style columns; :mod:`.cli` is the command (docs/predict.md).
"""

from affectlab.predict.cli import Summary, main, predict

__all__ = ["main", "predict", "Summary"]
