"""An independent client for the fleet's schema registry and wire format: Confluent's own
Python client (`confluent-kafka` SchemaRegistryClient, AvroSerializer, AvroDeserializer).
tests/registry_interop.rs runs it; every subcommand exits non-zero with a message on the
first mismatch and prints one JSON object on stdout when all is well.

Records cross the language boundary as "interop JSON": uuid as its string, timestamp-millis
as epoch milliseconds, enum as its symbol, decimal as a plain decimal string ("123.45").

  registry --registry URL --subject S --schema FILE
      register, fetch, look up, list, test compatibility, configure, delete, and serialize a
      record locally, all through SchemaRegistryClient against the registry.
  consume --bootstrap B --registry URL --topic T --schema FILE --expected FILE
      read len(expected) records from T with AvroDeserializer, check each equals the
      expected one, and check AvroSerializer writes the very same bytes for it.
  produce --bootstrap B --registry URL --topic T --schema FILE --count N
      write N records to T with AvroSerializer (subject T-value, auto-registered) and print
      them as interop JSON.
"""

import argparse
import datetime
import decimal
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.schema_registry import (
    ConfigCompatibilityLevel,
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    ServerConfig,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
STATUSES = ["PLACED", "PAID", "SHIPPED", "CANCELLED"]


class Mismatch(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Mismatch(what)


# --- interop JSON <-> Python values ---------------------------------------------------------


def to_interop(value):
    if isinstance(value, dict):
        return {k: to_interop(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_interop(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def from_interop(record):
    """Python values for AvroSerializer: the types fastavro maps logical types to."""
    out = dict(record)
    out["event_id"] = uuid.UUID(record["event_id"])
    out["occurred_at"] = EPOCH + datetime.timedelta(milliseconds=record["occurred_at"])
    if "total" in record:
        out["total"] = decimal.Decimal(record["total"])
    out["lines"] = [dict(line) for line in record["lines"]]
    return out


def sample(index, schema):
    """A deterministic record with the fields of `schema`; varies the nullable field, the
    enum, the array length and the decimal's sign."""
    record = {
        "event_id": str(uuid.UUID(int=(0x5EED << 64) + index * 7919, version=4)),
        "occurred_at": 1_764_300_000_000 + index * 1_001,
        "status": STATUSES[index % len(STATUSES)],
        "note": None if index % 3 == 0 else f"note {index} \u00e9\u00e8 \u2713",
        "lines": [
            {"sku": f"SKU-{index}-{n}", "quantity": n + 1, "unit_price_minor": 199 * (n + 1) + index}
            for n in range(index % 4)
        ],
        "total": str(decimal.Decimal(index * 12345 - 60000).scaleb(-2)),
    }
    names = {field["name"] for field in schema["fields"]}
    return {name: value for name, value in record.items() if name in names}


# --- subcommands -----------------------------------------------------------------------------


def registry(args):
    client = SchemaRegistryClient({"url": args.registry})
    subject = args.subject
    v1_text = open(args.schema, encoding="utf-8").read()
    v1 = json.loads(v1_text)
    # v2 adds an optional field (BACKWARD-compatible); bad drops a required-field default.
    v2 = dict(v1, fields=v1["fields"] + [{"name": "channel", "type": ["null", "string"], "default": None}])
    bad = dict(v1, fields=v1["fields"] + [{"name": "required_new", "type": "long"}])
    schema_v1, schema_v2, schema_bad = (Schema(json.dumps(s), "AVRO") for s in (v1, v2, bad))
    report = {}

    client.set_config(subject_name=subject, config=ServerConfig(compatibility=ConfigCompatibilityLevel.BACKWARD))
    check(client.get_config(subject).compatibility_level == ConfigCompatibilityLevel.BACKWARD, "per-subject config read back")
    check(client.get_compatibility(subject) == "BACKWARD", "get_compatibility")

    id1 = client.register_schema(subject, schema_v1)
    report["id_v1"] = id1
    fetched = client.get_schema(id1)
    check(json.loads(fetched.schema_str) == json.loads(v1_text), f"schema by id {id1} differs: {fetched.schema_str}")
    check(fetched.schema_type in (None, "AVRO"), f"schema type {fetched.schema_type}")
    latest = client.get_latest_version(subject)
    check((latest.version, latest.schema_id) == (1, id1), f"latest version {latest}")
    looked_up = client.lookup_schema(subject, schema_v1)
    check((looked_up.version, looked_up.schema_id) == (1, id1), f"lookup {looked_up}")
    check(client.register_schema(subject, Schema(json.dumps(v1, indent=2), "AVRO")) == id1,
          "re-registering the same schema (other formatting) returns the same id")

    check(client.test_compatibility(subject, schema_v2) is True, "v2 (optional field) is BACKWARD-compatible")
    check(client.test_compatibility(subject, schema_bad) is False, "a new required field is not")
    try:
        client.register_schema(subject, schema_bad)
        raise Mismatch("registering an incompatible schema succeeded")
    except SchemaRegistryError as error:
        check(error.http_status_code == 409, f"incompatible registration: HTTP {error.http_status_code}")
        report["incompatible_error_code"] = error.error_code

    id2 = client.register_schema(subject, schema_v2)
    report["id_v2"] = id2
    check(id2 != id1, "a new schema gets a new id")
    check(client.get_versions(subject) == [1, 2], f"versions {client.get_versions(subject)}")
    check(client.get_version(subject, 1).schema_id == id1, "version 1 by number")
    # The client caches "latest" per subject: a fresh one must see version 2.
    client = SchemaRegistryClient({"url": args.registry})
    check(client.get_latest_version(subject).version == 2, "latest is now version 2")
    check(subject in client.get_subjects(), "subject listed")
    check(client.test_compatibility_all_versions(subject, schema_v2) is True, "v2 against all versions")

    # Ids are global: the same schema under another subject has the same id.
    scratch = subject + "-scratch"
    check(client.register_schema(scratch, schema_v1) == id1, "same schema, other subject, same id")
    check(client.delete_subject(scratch) == [1], "soft delete lists the deleted versions")
    check(scratch not in client.get_subjects(), "soft-deleted subject is not listed")
    check(client.delete_subject(scratch, permanent=True) == [1], "permanent delete")
    try:
        client.get_versions(scratch)
        raise Mismatch("a deleted subject still has versions")
    except SchemaRegistryError as error:
        check(error.error_code == 40401, f"deleted subject: error_code {error.error_code}")

    # Serialize locally with the registered schema and read it back.
    topic = subject.removesuffix("-value")
    serializer = AvroSerializer(client, json.dumps(v2), conf={"auto.register.schemas": False, "use.latest.version": True})
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext(topic, MessageField.VALUE)
    record = from_interop(sample(5, v1))
    record["channel"] = "web"
    framed = serializer(record, ctx)
    check(framed[0] == 0 and int.from_bytes(framed[1:5], "big") == id2, f"framing {framed[:5].hex()}")
    back = deserializer(framed, ctx)
    check(to_interop(back) == to_interop(record), f"round trip {back} != {record}")
    report["framed_hex"] = framed.hex()
    report["record"] = to_interop(record)
    return report


def consume(args):
    expected = json.load(open(args.expected, encoding="utf-8"))
    schema_text = open(args.schema, encoding="utf-8").read()
    client = SchemaRegistryClient({"url": args.registry})
    deserializer = AvroDeserializer(client)
    # Same schema as the Rust writer: registration is a lookup that must return its id.
    serializer = AvroSerializer(client, schema_text)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"interop-python-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 20,
    })
    consumer.subscribe([args.topic])
    received = []
    deadline = time.monotonic() + args.timeout
    try:
        while len(received) < len(expected) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            received.append(message.value())
    finally:
        consumer.close()
    check(len(received) == len(expected), f"received {len(received)} of {len(expected)} records")
    # Partitions interleave: match records by event id, not by arrival order.
    wanted = {record["event_id"]: record for record in expected}
    check(len(wanted) == len(expected), "expected event ids are unique")
    ids = set()
    ctx = SerializationContext(args.topic, MessageField.VALUE)
    for raw in received:
        ids.add(int.from_bytes(raw[1:5], "big"))
        got = to_interop(deserializer(raw, ctx))
        want = wanted.pop(got["event_id"], None)
        check(want is not None, f"unexpected or duplicate record {got}")
        check(got == want, f"decoded {got} != expected {want}")
        again = serializer(from_interop(want), ctx)
        check(again == raw, f"AvroSerializer wrote {again.hex()} but the producer wrote {raw.hex()}")
    return {"consumed": len(received), "schema_ids": sorted(ids), "byte_identical": True}


def produce(args):
    schema_text = open(args.schema, encoding="utf-8").read()
    client = SchemaRegistryClient({"url": args.registry})
    serializer = AvroSerializer(client, schema_text)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    errors = []
    records = [sample(index, json.loads(schema_text)) for index in range(args.count)]
    for record in records:
        value = serializer(from_interop(record), SerializationContext(args.topic, MessageField.VALUE))
        producer.produce(args.topic, key=record["event_id"], value=value,
                         on_delivery=lambda error, _msg: errors.append(error) if error else None)
        producer.poll(0)
    check(producer.flush(args.timeout) == 0, "records left undelivered")
    check(not errors, f"delivery errors: {errors}")
    schema_id = client.lookup_schema(f"{args.topic}-value", Schema(schema_text, "AVRO")).schema_id
    return {"produced": len(records), "schema_id": schema_id, "records": records}


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("registry")
    p.add_argument("--registry", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--schema", required=True)
    for name in ("consume", "produce"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--registry", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--schema", required=True)
        p.add_argument("--timeout", type=float, default=30.0)
        if name == "consume":
            p.add_argument("--expected", required=True)
        else:
            p.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    try:
        report = {"registry": registry, "consume": consume, "produce": produce}[args.command](args)
    except Mismatch as mismatch:
        print(f"interop {args.command}: MISMATCH: {mismatch}", file=sys.stderr)
        sys.exit(1)
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
