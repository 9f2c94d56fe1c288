"""Data identities a run binds, computed from the manifest alone (run engine and verify share it).

The manifest's declared dataset hashes and cardinalities are what the run checked its data
against, so these values can be recomputed offline from ``manifest.cbor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from umlos._generated import tags
from umlos._generated.records import Manifest
from umlos.codec import commit_hash, digest
from umlos.data.sampler import sampler_config_hash, sampler_config_set_hash

_ZERO: Final = bytes(32)


@dataclass(frozen=True, slots=True)
class DataIdentities:
    sampler_config_hash: bytes
    data_access_plan_hash: bytes
    dataset_snapshot_id: str
    lineage_root_hash: bytes


def data_identities(m: Manifest, manifest_hash: bytes) -> DataIdentities:
    """Sampler, data-access-plan, snapshot and lineage identities of a normalized manifest."""
    assert m.data is not None  # normalization fills it
    keys = sorted(m.datasets)
    contents = {k: m.datasets[k].hash for k in keys}
    train = sorted({s.dataset_key for s in m.pipeline_stages if s.type == "train"})
    samplers = {k: sampler_config_hash(m.data, "train") for k in train}
    plans = {
        k: digest([contents[k], m.datasets[k].cardinality, samplers.get(k, _ZERO)]) for k in keys
    }
    return DataIdentities(
        sampler_config_hash=sampler_config_set_hash(samplers),
        data_access_plan_hash=commit_hash(tags.DATA_ACCESS_PLAN_SET, [[k, plans[k]] for k in keys]),
        dataset_snapshot_id=commit_hash(
            tags.DATASET_SNAPSHOT_SET, [[k, contents[k]] for k in keys]
        ).hex(),
        lineage_root_hash=commit_hash(
            tags.LINEAGE_OBJECT, [manifest_hash, [[k, contents[k]] for k in keys]]
        ),
    )
