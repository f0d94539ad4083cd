"""The worker: its loop, its presets, its pool and its own status server (never the store)."""
