"""Limits that hold on every process and host: request rates per wallet and per client address,
storage quotas reserved before an upload streams, the free-disk floor for uploads, and the size
of JSON and form bodies. services.py holds the counters and reservations, http.py what views
call, parsers.py the API's body limits."""
