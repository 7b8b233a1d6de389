"""A key server on loopback for the duration of a ``with`` block (shared by the key server's HTTP and oracle tests)."""

import contextlib
import threading

from dphe_bench.deploy.keyserver import KeyService
from dphe_bench.deploy.keyserver_http import bind_listener, start_key_server

STOP_WAIT_S = 20.0


@contextlib.contextmanager
def running_key_server(service: KeyService, host: str = "127.0.0.1", **options):
    """Serve ``service`` on ``host`` (a free port; plain HTTP unless ``certfile`` is given) in a daemon thread."""
    server = start_key_server(service, bind_listener(host, 0), insecure_local_test="certfile" not in options, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_WAIT_S)
