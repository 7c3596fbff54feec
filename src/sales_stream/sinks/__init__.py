"""Sinks: where consumed sale events are stored (MongoDB and its rollups, the lake, the extract)."""
