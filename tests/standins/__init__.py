"""Loopback stand-ins for the LLM providers: small bottle apps speaking each wire format.

Each takes queued scripted replies (``enqueue_reply``, ``enqueue_error``), answers an
echo when nothing is queued, and records every request in ``.requests``. Use one as a
context manager through ``serving()``, which sets ``base_url``.
"""

from __future__ import annotations
