"""Paired (noisy, clean) raw datasets in HDF5: synthesis, crash-safe writing, shards, inspection.

One module per concept; everything public is re-exported here (``from noisesim.dataset import X``):

* :mod:`~noisesim.dataset.layout`: the file format (schema ``noisesim.dataset/2``, the ``/params``
  record, per-sample CRC-32, shard and partial file names);
* :mod:`~noisesim.dataset.synthesis`: option parsing, :class:`SynthesisJob`, :class:`Synthesizer`
  (sample i, in any process; its random streams), :func:`params_from_record`, :func:`resynthesize`;
* :mod:`~noisesim.dataset.pool`: samples made here or in spawned workers through shared memory;
* :mod:`~noisesim.dataset.shards`: shard files written via ``.partial``, resume, the master file, and
  :func:`write_shard` (the task a Dask worker runs);
* :mod:`~noisesim.dataset.generate`: :func:`generate_dataset`;
* :mod:`~noisesim.dataset.inspect`: :func:`open_dataset_file`, :func:`inspect_dataset`,
  :func:`verify_dataset`, :func:`format_summary`, :func:`to_normalized`;
* :mod:`~noisesim.dataset.sheet`: :func:`contact_sheet`.
"""

from .generate import generate_dataset
from .inspect import channel_levels, format_summary, inspect_dataset, open_dataset_file, to_normalized, verify_dataset
from .layout import (
    COMPRESSIONS,
    PARAMS_DTYPE,
    PARTIAL_SUFFIX,
    SCHEMA,
    STORAGES,
    sample_crc32,
    sensor_from_attrs,
    shard_paths,
    stored_sample_crc32,
)
from .pool import SHM_DIR, check_shared_memory, shared_memory_bytes, single_threaded_kernels
from .shards import ShardTask, write_shard
from .sheet import LABEL_PX, contact_sheet
from .synthesis import (
    SEED_MAX,
    SynthesisJob,
    Synthesizer,
    check_noise_mode,
    check_sampling,
    check_seed,
    kernel_capacity,
    params_from_record,
    parse_range,
    parse_ratio,
    resolve_card,
    resynthesize,
    sample_seeds,
)

__all__ = [
    "channel_levels",
    "check_noise_mode",
    "check_sampling",
    "check_seed",
    "check_shared_memory",
    "COMPRESSIONS",
    "contact_sheet",
    "format_summary",
    "generate_dataset",
    "inspect_dataset",
    "kernel_capacity",
    "LABEL_PX",
    "open_dataset_file",
    "PARAMS_DTYPE",
    "params_from_record",
    "parse_range",
    "parse_ratio",
    "PARTIAL_SUFFIX",
    "resolve_card",
    "resynthesize",
    "sample_crc32",
    "sample_seeds",
    "SCHEMA",
    "SEED_MAX",
    "sensor_from_attrs",
    "shard_paths",
    "ShardTask",
    "shared_memory_bytes",
    "SHM_DIR",
    "single_threaded_kernels",
    "STORAGES",
    "stored_sample_crc32",
    "SynthesisJob",
    "Synthesizer",
    "to_normalized",
    "verify_dataset",
    "write_shard",
]
