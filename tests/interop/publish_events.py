"""Publishes Switchyard events with the stock nats-py client, following docs/wire-format.md.

Usage: publish_events.py NATS_URL TENANT

Publishes, to the events stream:
  1. `order.created` encoded as MessagePack (the default encoding),
  2. `order.created` encoded as JSON,
  3. the first event again with the same id (JetStream must report a duplicate).
Prints one JSON line per publish: {"id", "seq", "duplicate", "content_type"}.
"""

import asyncio
import json
import sys
import uuid
from datetime import datetime, timezone

import msgpack
import nats


def headers_for(event_id: str, tenant: str, content_type: str) -> dict:
    """The binary-mode CloudEvents headers of docs/wire-format.md §2.1."""
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "Nats-Msg-Id": event_id,
        "ce-source": "urn:svc:python-orders",
        "ce-type": "order.created",
        "ce-schemaversion": "1.0.0",
        "ce-tenant": tenant,
        "content-type": content_type,
        "ce-time": datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc).isoformat(),
        "ce-subject": "order-42",
    }


async def main(url: str, tenant: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    subject = f"switchyard.events.{tenant}.order.created"
    order = {"order_id": "o-42", "total_cents": 1999, "lines": ["book", "pen"]}

    msgpack_id = f"py-{uuid.uuid4()}"
    json_id = f"py-{uuid.uuid4()}"
    publishes = [
        (msgpack_id, "application/msgpack", msgpack.packb(order)),
        (json_id, "application/json", json.dumps(order).encode()),
        (msgpack_id, "application/msgpack", msgpack.packb(order)),
    ]
    for event_id, content_type, body in publishes:
        ack = await js.publish(subject, body, headers=headers_for(event_id, tenant, content_type))
        print(json.dumps({
            "id": event_id,
            "seq": ack.seq,
            "duplicate": bool(ack.duplicate),
            "content_type": content_type,
        }), flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
