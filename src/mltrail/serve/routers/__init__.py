"""The server's routes, one router per resource: ``status`` (open), ``predict``, ``feedback``
and ``admin`` (behind the API key)."""
