"""A split's images resized to the training square, and the file that keeps them decoded once.

Each image's long side is resized to the image size (:func:`resized_sizes`,
:func:`load_resized`) and the image padded to a square. :func:`build_image_cache`
stores those pixels once per dataset and size, beside the annotations, so
trials read pixels instead of decoding images.
"""

from __future__ import annotations

import os

import numpy as np

from nas.tasks.detection.annotations import CocoSplit


# Bump when the cached pixels would change (resizing, padding, decoding), so old caches are never read.
CACHE_VERSION = 1
CACHE_DIR = ".spinenas-cache"


def resized_sizes(split: CocoSplit, image_size: int):
    """Per image, the scale that fits its long side to ``image_size`` and its resized ``(height, width)``."""
    sizes = np.array(split.image_sizes, np.float32).reshape(-1, 2)
    scales = image_size / sizes.max(axis=1)
    return scales, np.maximum(np.round(sizes * scales[:, None]), 1).astype(np.int32)


def image_cache_path(split: CocoSplit, image_size: int) -> str:
    """Where :func:`build_image_cache` keeps ``split``'s images at ``image_size``: beside its annotations.

    The name hashes the cache version, the image size and every image's path,
    size on disk and modification time, so a changed image list or file never
    reads a stale cache.
    """
    import hashlib

    digest = hashlib.sha256(f"v{CACHE_VERSION} {image_size}px\n".encode())
    for path in split.image_paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    folder = os.path.join(os.path.dirname(os.path.abspath(split.annotations_path)), CACHE_DIR)
    return os.path.join(folder, f"images-{image_size}px-{len(split)}-{digest.hexdigest()[:16]}.npy")


def build_image_cache(split: CocoSplit, image_size: int, progress: bool = False):
    """Decode and resize ``split``'s images once into a ``uint8 [N, S, S, 3]`` file; its path, or None.

    Each image is resized (long side ``image_size``) and padded to a square
    exactly as :func:`~nas.tasks.detection.pipeline.make_dataset` does without
    a cache. The file is written under a temporary name and renamed, so
    concurrent workers never read half of one. None when the folder is not
    writable (the caller decodes instead).
    """
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    path = image_cache_path(split, image_size)
    if os.path.exists(path):
        return path
    _, targets = resized_sizes(split, image_size)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".images-", suffix=".npy", dir=os.path.dirname(path))
        os.close(handle)
    except OSError:
        return None
    try:
        images = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=(len(split), image_size,
                                                                                      image_size, 3))

        def fill(index):
            image = load_resized(split.image_paths[index], targets[index])
            images[index, :image.shape[0], :image.shape[1]] = image[:image_size, :image_size]

        # PIL releases the GIL while decoding and resizing, so threads use every core.
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            list(pool.map(fill, range(len(split))))
        images.flush()
        del images
        os.replace(staging, path)
    except OSError:
        return None
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    if progress:
        print(f"cached {len(split)} images at {image_size}x{image_size} in {path}", flush=True)
    return path


def load_resized(path, size) -> np.ndarray:
    """The image at ``path`` (str or the bytes tf.data passes) resized to ``size`` = (height, width)."""
    from nas.tasks.detection.images import load_image

    return load_image(path.decode() if isinstance(path, bytes) else str(path), (int(size[0]), int(size[1])))
