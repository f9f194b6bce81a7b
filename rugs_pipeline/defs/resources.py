"""The one resource every definition shares: where the store lives."""

from pathlib import Path

import dagster as dg

from rugs_pipeline import config
from rugs_pipeline.store.layout import Store


class StoreResource(dg.ConfigurableResource):
    """The event store root and the spool the sensor lands from.

    Empty means the environment: ``$RUGS_DATA_DIR`` (default ``~/rugs_data``) and
    ``$RUGS_SPOOL_DIR`` (default ``<data dir>/spool``).
    """

    data_dir: str = ""
    spool_dir: str = ""

    def store(self) -> Store:
        return Store(Path(self.data_dir).expanduser() if self.data_dir else config.data_dir(),
                     Path(self.spool_dir).expanduser() if self.spool_dir else config.spool_dir())
