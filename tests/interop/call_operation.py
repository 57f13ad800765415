"""Calls Switchyard plugin operations with the stock nats-py client, following docs/operations.md.

Usage: call_operation.py NATS_URL SERVICE

Calls, as the service SERVICE for tenant `acme`:
  1. `rate` of plugin `tax-rates` for region `eu` (answered),
  2. the same for region `mars` (the handler refuses it with its own code),
  3. `slow` of plugin `pricing` with a 300 ms timeout (the dispatcher answers `call.timed-out`),
  4. `rate` again from a connection whose inbox is not the service's own (never answered).
Prints one JSON line per call.
"""

import asyncio
import json
import sys
import time

import nats
from nats.errors import NoRespondersError, TimeoutError


def call_subject(tenant: str, plugin: str, operation: str, service: str) -> str:
    """The call subject of docs/operations.md: the caller's kind and name last."""
    return f"switchyard.op.{tenant}.{plugin}.{operation}.service.{service}"


async def call(nc, plugin: str, operation: str, service: str, request: dict, timeout_ms: int) -> dict:
    headers = {
        "content-type": "application/json",
        "switchyard-call": f"timeout-ms={timeout_ms};version=1.0.0",
    }
    started = time.monotonic()
    try:
        # Wait a little longer than the dispatcher does, so that its own answer comes first.
        answer = await nc.request(
            call_subject("acme", plugin, operation, service),
            json.dumps(request).encode(),
            timeout=timeout_ms / 1000 + 1,
            headers=headers,
        )
    except NoRespondersError:
        return {"unavailable": True}
    except TimeoutError:
        return {"unanswered": True}
    took_ms = (time.monotonic() - started) * 1000
    found = answer.headers or {}
    if "switchyard-error-code" in found or "Nats-Service-Error" in found:
        return {
            "error_code": found.get("switchyard-error-code"),
            "status": found.get("Nats-Service-Error-Code"),
            "reason": found.get("Nats-Service-Error"),
            "took_ms": took_ms,
        }
    return {
        "response": json.loads(answer.data),
        "attempts": int(found.get("switchyard-call-attempts", "0")),
        "took_ms": took_ms,
    }


async def main(url: str, service: str) -> None:
    # The answers come back in the service's own inbox, or not at all.
    nc = await nats.connect(url, inbox_prefix=f"_SY_SERVICE.switchyard.{service}")
    results = [
        await call(nc, "tax-rates", "rate", service, {"region": "eu", "total_cents": 1000}, 2000),
        await call(nc, "tax-rates", "rate", service, {"region": "mars", "total_cents": 1000}, 2000),
        await call(nc, "pricing", "slow", service, {"sku": "a", "quantity": 1}, 300),
    ]
    await nc.close()
    elsewhere = await nats.connect(url)
    results.append(
        await call(elsewhere, "tax-rates", "rate", service, {"region": "eu", "total_cents": 1000}, 500)
    )
    await elsewhere.close()
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
