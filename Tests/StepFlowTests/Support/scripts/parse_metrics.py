#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with prometheus_client's parser (the reference
parser) and prints the families and samples it found, as JSON. Exits 1 when it cannot parse."""
import json, sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {"type": family.type,
                             "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples]}
print(json.dumps(families))
