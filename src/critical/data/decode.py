"""Image decoding for the ImageFolder loader: torchvision codecs in threads, PIL as a fallback.

:func:`_decode_files` turns a list of image paths into ``uint8`` tensors ``(C, H, W)`` (RGB or
grayscale, optionally resized to a square); :func:`critical.data.datasets.load_image_folder`
calls it on a cache miss.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor


def _decode_files(
    paths: list[str], grayscale: bool, image_size: int | None, num_workers: int
) -> list[Tensor]:
    with warnings.catch_warnings():
        # torchvision >= 0.29 deprecates its image codecs in favour of torchcodec; they still work
        warnings.filterwarnings("ignore", ".*decoding and encoding capabilities.*")
        try:
            from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
        except ImportError:  # pragma: no cover - future torchvision without image codecs
            return _decode_files_pil(paths, grayscale, image_size)
        return _decode_files_tv(
            paths,
            grayscale,
            image_size,
            num_workers,
            ImageReadMode,
            decode_image,
            decode_jpeg,
            read_file,
        )


def _resize(img: Tensor, image_size: int | None) -> Tensor:
    if image_size is not None and tuple(img.shape[-2:]) != (image_size, image_size):
        from torchvision.transforms.v2.functional import resize

        img = resize(img, [image_size, image_size], antialias=True)
    return img


def _decode_files_pil(paths: list[str], grayscale: bool, image_size: int | None) -> list[Tensor]:
    import numpy as np
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L" if grayscale else "RGB"))
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        out.append(_resize(t.contiguous(), image_size))
    return out


def _decode_files_tv(
    paths, grayscale, image_size, num_workers, ImageReadMode, decode_image, decode_jpeg, read_file
) -> list[Tensor]:
    mode = ImageReadMode.GRAY if grayscale else ImageReadMode.RGB

    def decode_one(p: str, data: Tensor) -> Tensor:
        try:
            return decode_image(data, mode=mode)
        except RuntimeError as err:
            raise ValueError(f"could not decode image {p}: {err}") from err

    def decode_chunk(chunk: list[str]) -> list[Tensor]:
        datas = [read_file(p) for p in chunk]
        jpeg = [i for i, p in enumerate(chunk) if p.lower().endswith((".jpg", ".jpeg"))]
        out: list[Tensor | None] = [None] * len(chunk)
        if jpeg:
            try:  # a list of JPEGs decodes about 2x faster than one call per image
                for i, img in zip(jpeg, decode_jpeg([datas[i] for i in jpeg], mode=mode)):
                    out[i] = img
            except RuntimeError:  # find the culprit (or a mislabelled PNG) one by one
                for i in jpeg:
                    out[i] = decode_one(chunk[i], datas[i])
        done: list[Tensor] = []
        for i, p in enumerate(chunk):
            img = out[i]
            done.append(_resize(img if img is not None else decode_one(p, datas[i]), image_size))
        return done

    size = max(1, min(1024, len(paths) // max(1, 4 * num_workers) + 1))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    if num_workers <= 1 or len(chunks) == 1:
        return [img for c in chunks for img in decode_chunk(c)]
    with ThreadPoolExecutor(num_workers) as pool:  # decoding releases the GIL
        return [img for part in pool.map(decode_chunk, chunks) for img in part]
