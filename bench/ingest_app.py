"""The ASGI application of bench/heartbeats.py --server ingest: the ingest server's, plus the
bare reference at /bench/bare-heartbeat (parse, one signature recovery, one insert, stored in the
same group commits: the least a verified heartbeat can cost through the same server) and an empty
answer at /bench/empty (the ceiling: what the stack and the load generator do with no work)."""
from datetime import datetime, timezone as dt_timezone
import json
import secrets
import time

from marketplace.rewards import ingest_server, signing
from django.conf import settings

_INSERT_MANY = """
INSERT INTO rewards_heartbeat (device_id, seq, received_at, slot, probe_ok, ip, sent_at)
SELECT 0, seq, now, slot, false, ip, now
FROM unnest(%(device)s::varchar[], %(seq)s::bigint[], %(now)s::timestamptz[], %(slot)s::bigint[], %(ip)s::inet[])
    AS t(device, seq, now, slot, ip)"""

bare_writer = ingest_server.Writer(_INSERT_MANY, ("device", "seq", "now", "slot", "ip"))


async def bare(scope, receive, send):
    body = json.loads(await ingest_server._read_body(receive, 4096))
    message = signing.heartbeat_message(chain_id=settings.CHAIN_ID, device=body["device"], seq=body["seq"],
                                        nonce=body["nonce"], sent_at=body["sent_at"], probe=body["probe"])
    signing.recover(message, body["signature"])
    now = time.time()
    await bare_writer.store({"device": body["device"], "seq": secrets.randbits(62),
                             "now": datetime.fromtimestamp(now, tz=dt_timezone.utc), "slot": int(now // 60),
                             "ip": scope["client"][0]})
    await ingest_server._send(send, 200, {"seq": body["seq"], "nonce": body["nonce"]})


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/bench/bare-heartbeat":
        return await bare(scope, receive, send)
    if scope["type"] == "http" and scope["path"] == "/bench/empty":
        await receive()
        return await ingest_server._send(send, 200, {"seq": 0, "nonce": ""})
    return await ingest_server.app(scope, receive, send)
