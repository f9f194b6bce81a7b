"""The one resource every definition shares: where the store lives."""

import dagster as dg

from rugs_pipeline import config
from rugs_pipeline.store.layout import Store


class StoreResource(dg.ConfigurableResource):
    """The event store root (a folder, ``file:///folder`` or ``s3://bucket/prefix``) and the spool the sensor
    lands from.

    Empty means the environment: ``$RUGS_DATA_DIR`` (default ``~/rugs_data``) and
    ``$RUGS_SPOOL_DIR`` (default ``<data dir>/spool``; required with an s3 lake).
    """

    data_dir: str = ""
    spool_dir: str = ""

    def store(self) -> Store:
        settings = config.Settings.from_env()
        return Store.at(self.data_dir or settings.data_dir, self.spool_dir or settings.spool_path)
