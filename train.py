"""Train a model: ``python train.py method=mlcr dataset=synthetic`` (see README)."""

from affectlab.train import main

if __name__ == "__main__":
    main()
