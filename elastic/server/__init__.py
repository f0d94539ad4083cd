"""The orchestrator's HTTP side: the WSGI app and its routes over the store, and ``serve``."""
