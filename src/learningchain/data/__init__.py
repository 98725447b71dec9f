"""Data sets and how they are split among data holders.

Every loader returns a :class:`Dataset` with float32 features and int64 class
labels (0/1 for the binary sets), already split into training and test parts.
``load_dataset(name, ...)`` is the registry; an unknown name is refused with the
list of known ones. A user's own data (arrays, ``.npz``, CSV, a factory's result)
goes through :mod:`.user`.
"""

from .datasets import DATASETS, Dataset, load_dataset
from .partition import partition_indices
from .user import as_dataset, data_fingerprint, from_object, load_user_data

__all__ = ["DATASETS", "Dataset", "as_dataset", "data_fingerprint", "from_object", "load_dataset", "load_user_data",
           "partition_indices"]
