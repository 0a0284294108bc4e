"""``python -m affectlab.predict`` = ``affectlab-predict``."""

from affectlab.predict.cli import main

main()
