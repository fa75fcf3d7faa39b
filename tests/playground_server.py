"""Serve the fivetran-api-playground app on 127.0.0.1 (a free port) until terminated.

Prints one JSON line, {"port": N}, once listening. Run it with TZ=UTC: the playground writes local
times with a Z suffix. Importing the app here, not running its CLI, avoids the CLI's reloader
(which changes the API key) and its version check (slow offline).
"""

import argparse
import json
import signal
import sys

from werkzeug.serving import make_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate-limit", nargs=2, type=float, metavar=("CAPACITY", "RPS"))
    args = parser.parse_args()

    import fivetran_api_playground as playground

    playground.API_KEY = args.api_key
    if args.rate_limit:
        playground.app.config["RATE_LIMITING_ENABLED"] = True
        playground.app.config["RATE_LIMIT_CAPACITY"] = args.rate_limit[0]
        playground.app.config["RATE_LIMIT_RPS"] = args.rate_limit[1]
        playground.rate_limiter._bucket = None
    server = make_server("127.0.0.1", args.port, playground.app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
