"""The top floor: operators' tools over the whole pipeline (audit, bench, backfill, status), below only the CLI."""
