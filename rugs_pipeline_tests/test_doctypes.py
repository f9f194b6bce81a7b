"""The registry of doc types is what the store and Dagster are generated from: nothing names a doc type it lacks."""

from __future__ import annotations

import dagster as dg
import pandera.polars as pa

from rugs_pipeline.defs.assets import METADATA_PARTS
from rugs_pipeline.definitions import defs
from rugs_pipeline.derive.datasets import DERIVATIONS
from rugs_pipeline.store import doctypes, schema


def test_each_rule_names_a_column_and_a_pandera_check() -> None:
    for doc in doctypes.REGISTRY:
        assert set(doc.rules) <= set(schema.COLUMNS), doc.name
        assert set(doc.unique or ()) <= set(schema.COLUMNS), doc.name
        assert all(hasattr(pa.Check, r.check[0]) for r in doc.rules.values() if r.check), doc.name


def test_each_doc_type_is_an_asset_with_its_description_and_metadata_parts() -> None:
    graph = defs.resolve_asset_graph()
    for doc in doctypes.REGISTRY:
        assert graph.get(dg.AssetKey(doc.name)).description == doc.description
        assert set(doc.metadata) <= set(METADATA_PARTS), doc.name
    assert set(DERIVATIONS) == set(doctypes.FRAME_DERIVED)

