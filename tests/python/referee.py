"""The referee for schema evolution: the Python `avro` package's port of Java Avro's
SchemaCompatibility (`avro.compatibility.ReaderWriterCompatibilityChecker`).

Reads the cases file (tests/python/evolution_cases.json) and prints one JSON object:
{"cases": {name: {MODE: bool}}, "chains": {name: {MODE: bool}}, "reasons": {name/MODE: [...]}}

Modes as Confluent defines them: BACKWARD = the new schema reads data of the old one,
FORWARD = the old reads the new, FULL = both; *_TRANSITIVE against every earlier version
instead of the latest only. A dropped enum symbol or union branch is incompatible (the
checker's verdict, and Confluent's rule).

Usage: python referee.py CASES_JSON
"""

import json
import sys

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

NON_TRANSITIVE = ("BACKWARD", "FORWARD", "FULL")


def parse(schema):
    return avro.schema.parse(json.dumps(schema))


def reads(reader, writer):
    """(compatible, reasons) for `reader` decoding data written with `writer`."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    ok = result.compatibility is SchemaCompatibilityType.compatible
    if ok:
        return True, []
    return False, [f"{message} (at {', '.join(sorted(result.locations))})" for message in sorted(result.messages)]


def verdict(mode, candidate, previous):
    """Confluent's rule: a level names the direction(s) and how many earlier versions count."""
    against = previous if mode.endswith("_TRANSITIVE") else previous[-1:]
    base = mode.removesuffix("_TRANSITIVE")
    reasons = []
    for old in reversed(against):
        if base in ("BACKWARD", "FULL"):
            ok, why = reads(candidate, old)
            reasons += [f"new cannot read old: {w}" for w in why]
        if base in ("FORWARD", "FULL"):
            ok, why = reads(old, candidate)
            reasons += [f"old cannot read new: {w}" for w in why]
    return not reasons, reasons


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    out = {"cases": {}, "chains": {}, "reasons": {}}
    for case in doc["cases"]:
        writer, reader = parse(case["writer"]), parse(case["reader"])
        out["cases"][case["name"]] = {}
        for mode in NON_TRANSITIVE:
            ok, reasons = verdict(mode, reader, [writer])
            out["cases"][case["name"]][mode] = ok
            if reasons:
                out["reasons"][f"{case['name']}/{mode}"] = reasons
    for chain in doc["chains"]:
        versions = [parse(v) for v in chain["versions"]]
        candidate = parse(chain["candidate"])
        out["chains"][chain["name"]] = {}
        for mode in chain["expected"]:
            ok, reasons = verdict(mode, candidate, versions)
            out["chains"][chain["name"]][mode] = ok
            if reasons:
                out["reasons"][f"{chain['name']}/{mode}"] = reasons
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
