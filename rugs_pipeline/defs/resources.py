"""The one resource every definition shares: where the store lives."""

from pathlib import Path

import dagster as dg

from rugs_pipeline import config
from rugs_pipeline.store.layout import Store


class StoreResource(dg.ConfigurableResource):
    """The event store root; empty means ``$RUGS_DATA_DIR`` (default ``~/rugs_data``)."""

    data_dir: str = ""

    def store(self) -> Store:
        return Store(Path(self.data_dir).expanduser() if self.data_dir else config.data_dir())
