"""``python -m affectlab.report`` = ``affectlab-report``."""

from affectlab.report.report import main

main()
