"""The API emulator as its own process: `python -m controller.k8s.emulator_server [--port N]`.

For benchmarks that must not share an interpreter with the controller (a real API server is another
process). Prints its base URL on the first line of stdout, serves until SIGTERM or SIGINT. The CRDs
come installed, and `GET /_emulator/requests?user=TOKEN` counts one client's requests by verb and
resource.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.resources import crd_directory


async def serve(port: int, history: int) -> None:
    emulator = KubeApiEmulator(garbage_collection=False, history_limit=history, port=port)
    emulator.install_crds_from(crd_directory(), recursive=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with emulator:
        sys.stdout.write(emulator.base_url + "\n")
        sys.stdout.flush()
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--history", type=int, default=200_000, help="watch events kept for resuming watches")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.history))


if __name__ == "__main__":
    main()
