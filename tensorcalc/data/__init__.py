"""tensorcalc.data — datasets, loaders, splits, transforms and the shipped data sets.

NumPy throughout; Tensors only on request (``DataLoader(..., as_tensor=True)``).

* :class:`Dataset`, :class:`TensorDataset`, :class:`Subset`, :class:`DataLoader` (reproducible
  shuffling from an explicit rng, ``state_dict``/``load_state_dict`` to resume mid-epoch).
* Splits: :func:`train_test_split`, :func:`train_val_test_split`, :func:`kfold_indices`.
* Transforms: :class:`ToFloat`, :class:`Normalize`, :class:`OneHot`, :class:`Flatten`,
  :class:`Compose`.
* Shipped: :func:`load_mnist10k`, :func:`mnist10k_split`, :func:`load_shakespeare`,
  :class:`CharVocab`. Fashion-MNIST from IDX files: :func:`load_fashion_mnist`,
  :func:`download_fashion_mnist`.
* Synthetic: :func:`make_linear`, :func:`make_moons`, :func:`make_spirals`, :func:`make_blobs`.
* Validation: :class:`DataError`, :func:`check_numeric`, :func:`check_finite`,
  :func:`check_labels`; settings: :func:`check_fraction`, :func:`check_at_least`,
  :func:`check_widths`.
"""

from .dataset import ArrayDataset, Dataset, Subset, TensorDataset, as_array  # noqa: F401
from .datasets import (  # noqa: F401
    MNIST10K_CLASS_COUNTS,
    CharVocab,
    Splits,
    data_file,
    load_mnist10k,
    load_shakespeare,
    mnist10k_split,
)
from .fashion import (  # noqa: F401
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRRORS,
    FASHION_MNIST_URL,
    ChecksumError,
    download_fashion_mnist,
    file_sha256,
    find_fashion_mnist,
    load_fashion_mnist,
    verify_fashion_mnist,
)
from .idx import IDXError, parse_idx, read_idx, write_idx  # noqa: F401
from .loader import DataLoader, default_collate, to_tensors  # noqa: F401
from .splits import kfold_indices, split_count, train_test_split, train_val_test_split  # noqa: F401
from .synthetic import make_blobs, make_linear, make_moons, make_spirals  # noqa: F401
from .transforms import (  # noqa: F401
    Compose,
    Flatten,
    Lambda,
    Normalize,
    OneHot,
    ToFloat,
    Transform,
)
from .validation import (  # noqa: F401
    DataError,
    check_at_least,
    check_finite,
    check_fraction,
    check_labels,
    check_numeric,
    check_widths,
)
