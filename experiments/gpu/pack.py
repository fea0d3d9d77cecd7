"""Pack an ImageFolder tree of JPEGs (the 50,000 CIFAR-10 training images of ../shared/data) into
one .npz of raw JPEG bytes (~48 MiB), small enough to travel to a GPU machine; never commit it.

    python experiments/gpu/pack.py ../shared/data/cifar10/train data/cifar10_train_jpeg.npz
"""

import os
import sys

import numpy as np


def main(src: str, dst: str) -> None:
    blobs, names = [], []
    for cls in sorted(os.listdir(src)):
        for f in sorted(os.listdir(os.path.join(src, cls))):
            with open(os.path.join(src, cls, f), "rb") as fh:
                blobs.append(fh.read())
            names.append(f"{cls}/{f}")
    lens = np.array([len(b) for b in blobs], dtype=np.int64)
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    np.savez(dst, data=data, lens=lens, names=np.array(names))
    print(f"packed {len(names)} files, {data.nbytes / 2**20:.1f} MiB, into {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
