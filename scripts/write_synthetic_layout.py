"""Write synthetic faces in a real dataset's on-disk layout, to try a pipeline before the data
arrives (and as test fixtures)::

    python scripts/write_synthetic_layout.py --layout ckplus --out data/synthetic_layouts/CK+
    python train.py experiment=mlcr_ckplus dataset.root=data/synthetic_layouts/CK+ '~pool' \\
        method.unlabeled=false model=small_cnn dataset.image_size=64 dataset.align_size=69

Faces come from the synthetic benchmark's story (``affectlab.data.layouts.faces.layout_faces``);
each dataset's ``affectlab.data.layouts.<name>.write_layout`` lays them out exactly as the real
files are. An existing ``--out`` folder is refused (nothing is overwritten).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from affectlab.data.layouts.faces import layout_faces

# --layout name → the module holding that dataset's write_layout
LAYOUTS = {name: f"affectlab.data.layouts.{name}"
           for name in ("ckplus", "bp4d", "disfa", "emotionet", "celeba", "affwild2",
                        "affectnet", "expw", "afew_va", "lfw", "msceleb")}


def available_layouts() -> list[str]:
    """The layouts whose dataset module exists in this checkout."""
    return [name for name, module in LAYOUTS.items() if importlib.util.find_spec(module)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, choices=available_layouts())
    parser.add_argument("--out", required=True, type=Path, help="new folder to write")
    parser.add_argument("--subjects", type=int, default=20, help="number of identities")
    parser.add_argument("--images", type=int, default=5, help="faces per identity")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder (nothing is overwritten)")
    faces = layout_faces(args.subjects, args.images, seed=args.seed, image_size=args.image_size)
    module = importlib.import_module(LAYOUTS[args.layout])
    module.write_layout(faces, args.out)
    print(f"wrote {len(faces)} synthetic faces in the {args.layout} layout to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
