# Parses a Prometheus text exposition from stdin with Prometheus's own Python parser
# (prometheus_client.parser) and prints one JSON object: {"families": {name: type},
# "samples": [[sample name, {label: value}, value], ...]}. A document the parser rejects
# makes it exit non-zero with the parser's error.
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
families = {}
samples = []
for family in text_string_to_metric_families(text):
    families[family.name] = family.type
    for s in family.samples:
        samples.append([s.name, dict(s.labels), s.value])
json.dump({"families": families, "samples": samples}, sys.stdout)
