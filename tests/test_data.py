import gzip

import numpy as np
import pytest
import torch

from vitlab import ConfigError, DataNotFoundError
from vitlab import data


def test_fashion_mnist_ships_and_loads():
    train, test = data.fashion_mnist("train"), data.fashion_mnist("test")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert train.classes[9] == "Ankle boot"


def test_subsets_are_balanced_deterministic_and_nested():
    small = data.fashion_mnist("train", subset=250, seed=3)
    large = data.fashion_mnist("train", subset=1000, seed=3)
    again = data.fashion_mnist("train", subset=250, seed=3)
    other = data.fashion_mnist("train", subset=250, seed=4)
    assert torch.equal(small.images, again.images)
    assert torch.equal(large.images[:250], small.images) and torch.equal(large.labels[:250], small.labels)
    counts = torch.bincount(small.labels, minlength=10)
    assert counts.max() - counts.min() <= 1
    assert not torch.equal(small.images, other.images)


def test_subset_larger_than_data_is_refused():
    with pytest.raises(ConfigError, match="larger than"):
        data.fashion_mnist("test", subset=10001)


def test_preprocess_maps_uint8_to_minus_one_plus_one():
    x = torch.tensor([0, 255, 51], dtype=torch.uint8)
    torch.testing.assert_close(data.preprocess(x), torch.tensor([-1.0, 1.0, -0.6]))
    with pytest.raises(TypeError, match="uint8"):
        data.preprocess(torch.rand(3))


def test_missing_files_raise_data_not_found_with_a_hint(tmp_path):
    with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist"):
        data.fashion_mnist("train", root=tmp_path)
    with pytest.raises(DataNotFoundError, match="download=True"):
        data.mnist("train", root=tmp_path)
    with pytest.raises(DataNotFoundError, match="download=True"):
        data.cifar10("test", root=tmp_path)


def _write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_idx_files_in_torchvision_layout(tmp_path, compress):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28))
    labels = np.arange(20) % 10
    ext = ".gz" if compress else ""
    _write_idx(raw / f"t10k-images-idx3-ubyte{ext}", images, compress)
    _write_idx(raw / f"t10k-labels-idx1-ubyte{ext}", labels, compress)
    ds = data.mnist("test", root=tmp_path)
    assert ds.images.shape == (20, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images.astype(np.uint8)))
    assert ds.labels.tolist() == labels.tolist()
    assert len(data.mnist("test", root=tmp_path, subset=10)) == 10


def test_truncated_idx_file_is_reported(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") * 3 + b"\x00")
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "t10k-images-idx3-ubyte")


def test_cifar10_reads_the_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(6, -1)], axis=1)
    records.tofile(folder / "test_batch.bin")
    ds = data.cifar10("test", root=tmp_path)
    assert ds.images.shape == (6, 3, 32, 32)
    assert torch.equal(ds.images, torch.from_numpy(pixels))
    assert ds.labels.tolist() == labels.tolist()
    assert ds.classes[9] == "truck"


@pytest.mark.parametrize("name", data.PHOTOS)
def test_photos_ship_with_their_licence(name):
    img = data.load_photo(name, size=224)
    assert img.shape == (3, 224, 224) and img.dtype == torch.uint8
    assert name in (data.data_dir() / "images" / "LICENSE.md").read_text()
