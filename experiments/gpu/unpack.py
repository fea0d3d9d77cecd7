"""Unpack the CIFAR-10 training JPEGs packed by ``pack.py`` into an ImageFolder tree.

python experiments/gpu/unpack.py data/cifar10_train_jpeg.npz /tmp/cifar10/train
"""

import sys
from pathlib import Path

import numpy as np


def main(src: str, dst: str) -> None:
    pack = np.load(src)
    data, lens, names = pack["data"], pack["lens"], pack["names"]
    offsets = np.concatenate([[0], np.cumsum(lens)])
    root = Path(dst)
    for i, name in enumerate(names):
        path = root / str(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    print(f"unpacked {len(names)} images into {root}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
