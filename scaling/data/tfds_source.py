"""TFDS text datasets as random-access document sources, without TensorFlow.

``tfds.data_source`` reads a prepared dataset's ArrayRecord files directly
(random access by index, no ``tf.data``), so ``tensorflow-datasets`` works at
run time without TensorFlow installed. ``grain.MapDataset.source(...).map(...)``
turns it into a random-access sequence of texts, which is exactly the document
source the packing step wants (and what a grain-based loader would start from).

On a TPU VM point ``DataConfig.data_dir`` at a bucket, e.g.
``data_dir="gs://my-bucket/tensorflow_datasets"``: tfds reads gs:// paths
through etils/epath (install ``gcsfs`` if your environment lacks a GCS
filesystem). Prepare the dataset once, elsewhere (``tfds build lm1b
--data_dir=gs://...`` with ``--file_format=array_record``), because preparing
usually needs TensorFlow and the network; ``DataConfig.download`` is False by
default so that a training job fails fast instead of starting a download.

Text comes back as ``str`` without TensorFlow and as ``bytes`` with it; the
tokenizers accept both.
"""

from __future__ import annotations

import operator


def open_texts(name: str, split: str, *, data_dir: str | None, text_key: str, download: bool):
    """(random-access sequence of texts, identity dict) for one TFDS split."""
    try:
        import tensorflow_datasets as tfds
        import grain
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "DataConfig.source='tfds' needs tensorflow-datasets and grain: pip install 'scaling[tfds]'"
        ) from e
    try:
        src = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except Exception as e:  # tfds raises many types; say which config fields were used
        raise ValueError(
            f"DataConfig.name={name!r}: cannot open TFDS data source for split={split!r}, "
            f"data_dir={data_dir!r}, download={download}: {type(e).__name__}: {e}"
        ) from e
    if len(src) == 0:
        raise ValueError(f"DataConfig.name={name!r}: split {split!r} is empty")
    first = src[0]
    if not isinstance(first, dict) or text_key not in first:
        keys = sorted(first) if isinstance(first, dict) else type(first).__name__
        raise ValueError(f"DataConfig.text_key={text_key!r}: not a feature of {name!r}; features: {keys}")
    texts = grain.MapDataset.source(src).map(operator.itemgetter(text_key))
    info = getattr(src, "dataset_info", None)
    identity = {
        "name": name,
        "full_name": getattr(info, "full_name", name),
        "version": str(getattr(info, "version", "unknown")),
        "tfds_split": split,
        "num_documents": len(src),
        "data_dir": data_dir,
        "text_key": text_key,
    }
    return texts, identity
