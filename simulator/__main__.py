"""``python -m simulator [--port N ...]``: serve the simulated tenant with uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from simulator.app import Simulator
from simulator.config import OptionError, load


def main(argv: list[str] | None = None) -> int:
    try:
        options = load(argv)
    except OptionError as error:
        print(f"simulator: error: {error}", file=sys.stderr)
        return 2
    print(f"simulator: serving http://{options.host}:{options.port}/api/v1 ({options!r})", flush=True)
    # One process, no reload: the timeline is a pure function, so there is nothing to share.
    uvicorn.run(Simulator(options), host=options.host, port=options.port, log_level="warning",
                access_log=False, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
