"""Demo participants for the example checkout sagas: inventory, payment, shipping, and an
asynchronous warehouse.

    python scripts/demo_participants.py [--port 8009]     (or DEMO_PORT)

Each step has an action and a compensation. Make a step fail from the saga input:
`"card": "declined"` → the payment answers 422 (a business rejection: not retried, not
compensated); `"fail": "shipping"` → shipping answers 503 (retried, then compensated with
the others, because a 503 may have taken effect); an `address` that does not start with a
house number ("Main St") → shipping answers 422 (with `examples/order_checkout_repairable.json`
the saga pauses for an operator to correct it: README, "Repairing a saga"). Replays of an
Idempotency-Key get the first answer again, as a real participant would. Standard library
only.

The warehouse (examples/warehouse_checkout.json) is asynchronous: it answers 202 at once and
calls back after about a second — POST to the X-Saga-Callback-Url it was sent, with its
X-Saga-Callback-Token — with `succeeded` and the pick, or `failed` when the input says
`"stock": "none"`.

The webhook receiver (examples/full_checkout.json's `notify`) checks each event's
X-Saga-Signature with SAGA_WEBHOOK_SECRET (`make run` passes its own), prints it, and keeps
the last ones: `GET /webhooks` lists them, newest last. A signature that does not verify is
answered 401, so the orchestrator tries again later.
"""

import argparse
import collections
import functools
import hashlib
import hmac
import itertools
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ids = itertools.count(1)
_replies: dict[str, tuple[int, dict]] = {}
_lock = threading.Lock()
CALLBACK_DELAY_SECONDS = 1.0
CALLBACK_TRIES = 5
# The last webhook events received, oldest first (GET /webhooks).
_webhooks: collections.deque = collections.deque(maxlen=50)
_webhooks_lock = threading.Lock()


def inventory_reserve(body: dict) -> tuple[int, dict]:
    return 201, {"reservation_id": f"res-{next(_ids)}", "items": body.get("items")}


def payment_charge(body: dict) -> tuple[int, dict]:
    order = body.get("order") or {}
    if order.get("card") == "declined":
        return 422, {"error": "card declined"}
    return 201, {"payment_id": f"pay-{next(_ids)}", "amount": order.get("amount")}


# A deliverable address starts with a house number: "1 Main St", not "Main St".
DELIVERABLE = re.compile(r"\A\s*\d+\w*\s+\S")


def shipping_create(body: dict) -> tuple[int, dict]:
    order = body.get("order") or {}
    if order.get("fail") == "shipping":
        return 503, {"error": "shipping service unavailable"}
    address = order.get("address")
    if not isinstance(address, str) or not DELIVERABLE.match(address):
        return 422, {"error": f"address not deliverable: {address!r} has no house number"}
    return 201, {"shipment_id": f"ship-{next(_ids)}", "address": address}


def warehouse_pick(body: dict, headers) -> tuple[int, dict]:
    """Accepted now (202); the outcome follows by callback, about a second later."""
    pick_id = f"pick-{next(_ids)}"
    order = body.get("order") or {}
    if order.get("stock") == "none":
        outcome = {"outcome": "failed", "error": "out of stock at the warehouse"}
    else:
        outcome = {"outcome": "succeeded", "response": {"pick_id": pick_id, "boxes": 1}}
    url, token = headers.get("X-Saga-Callback-Url"), headers.get("X-Saga-Callback-Token")
    if url and token and url.startswith(("http://", "https://")):
        threading.Thread(target=_call_back, args=(url, token, outcome), daemon=True).start()
    return 202, {"pick_id": pick_id, "status": "accepted"}


def _call_back(url: str, token: str, outcome: dict) -> None:
    """POST the outcome to the orchestrator, retrying while it is unreachable or busy."""
    time.sleep(CALLBACK_DELAY_SECONDS)
    data = json.dumps(outcome).encode()
    headers = {"Content-Type": "application/json", "X-Saga-Callback-Token": token}
    for attempt in range(CALLBACK_TRIES):
        # http(s) only: checked before the thread started.
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                print(f"demo: callback {url} → {response.status}", flush=True)
                return
        except urllib.error.HTTPError as error:
            print(f"demo: callback {url} → {error.code}", flush=True)
            if error.code < 500 and error.code != 429:
                return  # refused for good (403, 409…): nothing to retry
        except OSError as error:
            print(f"demo: callback {url} failed: {error}", flush=True)
        time.sleep(2**attempt)


# The README's receiver (section "Webhooks"), as printed there: tests/unit checks it is.
def verify(secret: str, signature: str, body: bytes, tolerance: int = 300) -> bool:
    """`signature`: the X-Saga-Signature header; `body`: the raw request body."""
    parts = dict(item.partition("=")[::2] for item in signature.split(","))
    stamp = parts.get("t", "")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= tolerance
    return fresh and hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


def webhook_receive(raw: bytes, headers) -> tuple[int, dict]:
    """A lifecycle event: kept and printed when its signature verifies, else 401."""
    secret = os.environ.get("SAGA_WEBHOOK_SECRET", "").strip()
    signed = bool(secret) and verify(secret, headers.get("X-Saga-Signature") or "", raw)
    try:
        event = json.loads(raw)
    except ValueError:
        event = {}
    event = event if isinstance(event, dict) else {}
    step = (event.get("data") or {}).get("step")
    what = " ".join(str(part) for part in (event.get("type"), event.get("saga_id"), step) if part)
    check = "signature ok" if signed else "signature NOT verified: refused"
    print(f"demo: webhook {what} ({check})", flush=True)
    if not signed:
        return 401, {"error": "X-Saga-Signature does not verify with SAGA_WEBHOOK_SECRET"}
    with _webhooks_lock:
        _webhooks.append(event)
    return 200, {"received": event.get("id")}


def webhook_list(body: dict) -> tuple[int, list]:
    with _webhooks_lock:
        return 200, list(_webhooks)


def undone(what: str):
    # Compensations succeed even for something that never happened (an uncertain step).
    return lambda body: (200, {"undone": what, "request": body})


ROUTES = {
    ("POST", "/inventory/reservations"): inventory_reserve,
    ("DELETE", "/inventory/reservations/"): undone("reservation"),  # prefix: …/<id>
    ("POST", "/payments"): payment_charge,
    ("POST", "/payments/refunds"): undone("payment"),
    ("POST", "/shipping/shipments"): shipping_create,
    ("POST", "/shipping/shipments/cancel"): undone("shipment"),
    ("POST", "/warehouse/picks"): warehouse_pick,
    ("POST", "/warehouse/picks/cancel"): undone("pick"),
    ("POST", "/webhooks"): webhook_receive,
    ("GET", "/webhooks"): webhook_list,
    ("GET", "/health"): lambda body: (200, {"status": "ok"}),
}


# Handlers that read the request headers (the callback URL and token); the webhook
# receiver reads the raw body as well (the signature covers its bytes).
NEEDS_HEADERS = {warehouse_pick}
NEEDS_RAW = {webhook_receive}


def route(method: str, path: str):
    if (method, path) in ROUTES:
        return ROUTES[(method, path)]
    for (route_method, prefix), handler in ROUTES.items():
        if route_method == method and prefix.endswith("/") and path.startswith(prefix):
            return handler
    return None


def dispatch(handler, body: dict, raw: bytes, headers) -> tuple[int, object]:
    if handler in NEEDS_RAW:
        return handler(raw, headers)
    if handler in NEEDS_HEADERS:
        return handler(body, headers)
    return handler(body)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        handler = route(self.command, self.path.split("?")[0])
        key = self.headers.get("Idempotency-Key")
        if handler is None:
            status, reply = 404, {"error": f"no route {self.command} {self.path}"}
        else:
            body = body if isinstance(body, dict) else {}
            status, reply = self._once(key, handler, body, raw, self.headers)
        payload = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        print(f"demo: {self.command} {self.path} → {status}  (Idempotency-Key {key})", flush=True)

    def _once(self, key, handler, body, raw, headers):
        call = functools.partial(dispatch, handler, body, raw, headers)
        if not key:
            return call()
        with _lock:
            if key not in _replies or _replies[key][0] >= 500:
                _replies[key] = call()  # a replayed key gets the first answer, no new callback
            return _replies[key]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8009")))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"Demo participants on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
