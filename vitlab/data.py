"""Datasets that work offline: Fashion-MNIST shipped in ``data/``, MNIST / CIFAR-10 from the
user's files, and a few free-licence photographs.

Images are kept as uint8 tensors (N, C, H, W) in memory; :func:`preprocess` is the one
normalisation every vitlab model uses.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import ConfigError, DataNotFoundError

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "grace_hopper")

MEAN = 0.5  # preprocess maps pixel 0 -> -1 and 255 -> +1 (timm's ViT "inception" normalisation)
STD = 0.5


def data_dir() -> Path:
    """Where vitlab looks for its data: ``$VITLAB_DATA_DIR``, else the repository's ``data/``."""
    env = os.environ.get("VITLAB_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


def preprocess(images: torch.Tensor, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """uint8 images (..., C, H, W) in [0, 255] -> float32 ((x / 255) - mean) / std.

    The one normalisation of vitlab: with the defaults pixels map to [-1, 1], which is also what
    timm's augreg ViT weights expect.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"preprocess expects uint8 images in [0, 255], got dtype {images.dtype}; "
                        "convert with (x * 255).round().to(torch.uint8) if they are floats in [0, 1].")
    return (images.float() / 255.0 - mean) / std


class ImageDataset(Dataset):
    """Images and labels held in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        classes: class names, indexed by label.
    Indexing gives ``(preprocess(images[i]), labels[i])``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: tuple, name: str = "") -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.classes = tuple(classes)
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return preprocess(self.images[index]), self.labels[index]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
                f"classes={len(self.classes)})")


def read_idx(path: "str | Path") -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} is truncated or corrupt: expected {expected} bytes of data, "
                         f"found {len(raw) - offset}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find(folder: Path, stem: str) -> "Path | None":
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_idx_pair(folder: Path, split: str, what: str, hint: str) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = {"train": "train", "test": "t10k"}[split]
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lbl_path is None:
        raise DataNotFoundError(
            f"{what} {split} files not found in {folder} (looked for {prefix}-images-idx3-ubyte[.gz] "
            f"and {prefix}-labels-idx1-ubyte[.gz]). {hint}"
        )
    images = torch.from_numpy(read_idx(img_path).copy())[:, None]  # (N, 1, 28, 28)
    labels = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels.")
    return images, labels


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")


def balanced_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """An ordering of the indices whose every prefix is class-balanced.

    Each class's indices are shuffled (by ``seed``), then classes are taken round-robin, so the first
    n indices hold n // K or n // K + 1 images of each of the K classes, and the first n are always
    the first n of the first m (nested subsets).
    """
    gen = torch.Generator().manual_seed(seed)
    per_class = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        per_class.append(idx[torch.randperm(len(idx), generator=gen)])
    order = []
    longest = max(len(p) for p in per_class)
    for j in range(longest):  # round-robin over classes
        order.extend(p[j].item() for p in per_class if j < len(p))
    return torch.tensor(order, dtype=torch.long)


def take_subset(dataset: ImageDataset, subset: "int | None", seed: int = 0) -> ImageDataset:
    """A class-balanced, deterministic, nested subset of ``subset`` images (None: all, in order)."""
    if subset is None:
        return dataset
    if not isinstance(subset, int) or isinstance(subset, bool) or subset < 1:
        raise ConfigError(f"subset must be a positive int (number of images), got {subset!r}.")
    if subset > len(dataset):
        raise ConfigError(f"subset={subset} is larger than the {dataset.name} data ({len(dataset)} images); "
                          f"choose at most {len(dataset)}.")
    index = balanced_order(dataset.labels, seed)[:subset]
    return ImageDataset(dataset.images[index], dataset.labels[index], dataset.classes,
                        name=f"{dataset.name}[{subset}]")


def hold_out(dataset: ImageDataset, val_size: int, seed: int = 0) -> "tuple[ImageDataset, ImageDataset]":
    """Split a held-out validation set off a training set: ``(train, val)``, disjoint, class-balanced.

    For early stopping and model selection without touching the test set. ``val`` is the first
    ``val_size`` images of :func:`balanced_order` (``seed``) over ``dataset``'s labels, ``train`` the rest
    in their original order; together they are ``dataset``.

    Raises:
        ConfigError: ``val_size`` is not a positive int, or leaves no image to train on (it must be smaller
            than the dataset).
    """
    if not isinstance(val_size, int) or isinstance(val_size, bool) or val_size < 1:
        raise ConfigError(f"val_size must be a positive int (number of held-out images), got {val_size!r}.")
    if val_size >= len(dataset):
        raise ConfigError(f"A validation split of {val_size} images leaves nothing to train on: {dataset.name or 'the data'} "
                          f"has {len(dataset)} images. Hold out fewer (e.g. a tenth: {max(1, len(dataset) // 10)}).")
    order = balanced_order(dataset.labels, seed)
    val_index = order[:val_size]
    keep = torch.ones(len(dataset), dtype=torch.bool)
    keep[val_index] = False
    train_index = torch.nonzero(keep).flatten()
    name = dataset.name or "data"
    return (ImageDataset(dataset.images[train_index], dataset.labels[train_index], dataset.classes, name=f"{name}-train"),
            ImageDataset(dataset.images[val_index], dataset.labels[val_index], dataset.classes, name=f"{name}-val"))


def fashion_mnist(split: str = "train", subset: "int | None" = None, seed: int = 0,
                  root: "str | Path | None" = None) -> ImageDataset:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 train / 10,000 test 28x28 grey images, 10 classes.

    Args:
        split: 'train' or 'test'.
        subset: number of images to keep, class-balanced and nested (see :func:`balanced_order`).
        seed: which balanced subset.
        root: folder holding the four ``.gz`` files; default ``data_dir() / 'fashion-mnist'``.
    Returns:
        ImageDataset with ``.images`` (N, 1, 28, 28) uint8 and ``.labels`` (N,).
    """
    _check_split(split)
    folder = Path(root) if root is not None else data_dir() / "fashion-mnist"
    images, labels = _load_idx_pair(
        folder, split, "Fashion-MNIST",
        "They ship with the vitlab repository in data/fashion-mnist/; on Debian they are also in "
        "the package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/). Pass root=... or "
        "set VITLAB_DATA_DIR.")
    return take_subset(ImageDataset(images, labels, FASHION_MNIST_CLASSES, name=f"fashion-mnist-{split}"),
                       subset, seed)


def mnist(split: str = "train", subset: "int | None" = None, seed: int = 0,
          root: "str | Path | None" = None, download: bool = False) -> ImageDataset:
    """MNIST from the user's IDX files (``root`` or ``root/MNIST/raw``, as torchvision lays them out).

    With ``download=True`` and a network, torchvision fetches them first. Nothing is downloaded
    otherwise.
    """
    _check_split(split)
    root = Path(root) if root is not None else data_dir() / "mnist"
    if download:
        import torchvision

        torchvision.datasets.MNIST(str(root), train=split == "train", download=True)
    for folder in (root, root / "MNIST" / "raw"):
        if _find(folder, f"{'train' if split == 'train' else 't10k'}-images-idx3-ubyte"):
            images, labels = _load_idx_pair(folder, split, "MNIST", "")
            break
    else:
        raise DataNotFoundError(
            f"MNIST {split} files not found in {root} or {root / 'MNIST' / 'raw'}. Put the IDX files "
            "there, or call vitlab.data.mnist(..., download=True) on a machine with a network.")
    return take_subset(ImageDataset(images, labels, MNIST_CLASSES, name=f"mnist-{split}"), subset, seed)


def _read_cifar_bin(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    records = []
    for path in files:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % 3073:
            raise ValueError(f"{path} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of 3073).")
        records.append(raw.reshape(-1, 3073))
    data = np.concatenate(records)
    labels = torch.from_numpy(data[:, 0].astype(np.int64))
    images = torch.from_numpy(data[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, labels


def cifar10(split: str = "train", subset: "int | None" = None, seed: int = 0,
            root: "str | Path | None" = None, download: bool = False) -> ImageDataset:
    """CIFAR-10 from the user's files: the binary version (``cifar-10-batches-bin``), read by vitlab,
    or the python version (``cifar-10-batches-py``), read and checksum-verified by torchvision.

    With ``download=True`` and a network, torchvision fetches the python version first.
    """
    _check_split(split)
    root = Path(root) if root is not None else data_dir() / "cifar10"
    bin_dir = root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    if not download and all((bin_dir / n).is_file() for n in names):
        images, labels = _read_cifar_bin([bin_dir / n for n in names])
    elif download or (root / "cifar-10-batches-py").is_dir():
        import torchvision

        ds = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=download)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(ds.targets, dtype=torch.long)
    else:
        raise DataNotFoundError(
            f"CIFAR-10 {split} files not found under {root} (looked for cifar-10-batches-bin/ and "
            "cifar-10-batches-py/). Put them there, or call vitlab.data.cifar10(..., download=True) "
            "on a machine with a network.")
    return take_subset(ImageDataset(images, labels, CIFAR10_CLASSES, name=f"cifar10-{split}"), subset, seed)


def load_photo(name: str, size: "int | None" = None) -> torch.Tensor:
    """One of the free-licence photographs in ``data/images/`` as uint8 (3, H, W).

    Args:
        name: one of ``vitlab.data.PHOTOS`` (see ``data/images/LICENSE.md`` for their sources).
        size: if given, centre-crop to a square and resize to size x size.
    """
    from PIL import Image

    if name not in PHOTOS:
        raise ValueError(f"Unknown photo {name!r}; available: {', '.join(PHOTOS)}.")
    folder = data_dir() / "images"
    matches = sorted(folder.glob(name + ".*"))
    matches = [m for m in matches if m.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not matches:
        raise DataNotFoundError(f"Photo {name!r} not found in {folder}; it ships with the vitlab repository.")
    img = Image.open(matches[0]).convert("RGB")
    if size is not None:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()
