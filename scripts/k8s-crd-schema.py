#!/usr/bin/env python3
"""Extracts the OpenAPI v3 schema of one version of a CustomResourceDefinition as JSON,
for scripts/validate-k8s.sh. Used by hand when a pinned CRD is bumped (see
deploy/k8s/schemas/SOURCES.md); CI only reads its output.

    scripts/k8s-crd-schema.py CRD.yaml VERSION > deploy/k8s/schemas/GROUP_VERSION_KIND.json

`description` texts are dropped (they are documentation, and most of the bytes); every
other keyword is kept as the CRD has it. Needs PyYAML (the validator's environment has it).
"""
import json
import sys

import yaml


def strip(node, in_properties=False):
    """Drops `description` keywords, but not properties that happen to be named so."""
    if isinstance(node, dict):
        return {
            k: strip(v, in_properties=(k == "properties" and not in_properties))
            for k, v in node.items()
            if in_properties or k != "description"
        }
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main():
    path, version = sys.argv[1], sys.argv[2]
    with open(path) as f:
        crd = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "CustomResourceDefinition")
    spec = crd["spec"]
    (entry,) = [v for v in spec["versions"] if v["name"] == version]
    schema = strip(entry["schema"]["openAPIV3Schema"])
    schema["x-wsi-source"] = {
        "group": spec["group"],
        "version": version,
        "kind": spec["names"]["kind"],
        "crd": crd["metadata"]["name"],
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
