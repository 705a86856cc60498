"""``python -m serving.keys ID [--admin] [--rate R] [--burst B]``: a new API key.

Prints the secret once (hand it to the client) and the entry to configure, which holds only its
SHA-256 digest: a line for ``STOCK_API_KEYS`` / ``STOCK_API_ADMIN_KEYS`` and an object for the
``STOCK_API_KEYS_FILE`` JSON list.
"""

from __future__ import annotations

import argparse
import json

from serving.settings import KEY_ID, digest, new_secret


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.keys", description=__doc__)
    parser.add_argument("key_id", help="who the key is for: letters, digits and _.@-")
    parser.add_argument("--admin", action="store_true", help="may change the rollout share")
    parser.add_argument("--rate", type=float, help="requests per second (default: the server's)")
    parser.add_argument("--burst", type=int, help="bucket size (default: the server's)")
    args = parser.parse_args(argv)
    if not KEY_ID.match(args.key_id):
        parser.error("the key id takes letters, digits and _.@- only")
    if args.burst is not None and args.rate is None:
        parser.error("--burst needs --rate (an entry is id:sha256[:rate[:burst]])")
    secret = new_secret()
    entry = f"{args.key_id}:{digest(secret)}"
    record = {"id": args.key_id, "sha256": digest(secret), "admin": args.admin}
    if args.rate is not None:
        entry += f":{args.rate:g}" + (f":{args.burst}" if args.burst else "")
        record["rate_per_s"] = args.rate
    if args.burst is not None:
        record["burst"] = args.burst
    variable = "STOCK_API_ADMIN_KEYS" if args.admin else "STOCK_API_KEYS"
    print(f"secret (give to the client, not stored anywhere): {secret}")
    print(f"{variable} entry: {entry}")
    print(f"STOCK_API_KEYS_FILE item: {json.dumps(record)}")


if __name__ == "__main__":
    main()
