"""Django's PostgreSQL backend, with a connection health check that costs no round trip
while the connection is plainly fine.

With CONN_HEALTH_CHECKS Django runs `SELECT 1` before the first query of every request
(one more round trip and transaction per API request). A PostgreSQL connection that is
idle between requests receives nothing unless the server ends it (a restart or
pg_terminate_backend sends an error and closes the socket) or reports a setting change.
So: an idle socket with nothing to read is usable; anything readable, or a socket that
cannot be polled, gets Django's real check (`SELECT 1`), which also consumes a harmless
message. After a PostgreSQL restart the first request still reconnects instead of failing.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        try:
            if not self.connection.closed:
                poller = select.poll()
                poller.register(self.connection.fileno(), select.POLLIN | select.POLLPRI)
                if not poller.poll(0):
                    return True  # nothing arrived while idle: the server did not end it
        except (OSError, ValueError, base.Database.Error):
            pass
        return super().is_usable()
