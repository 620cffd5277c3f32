#!/usr/bin/env bash
# Supply-chain check of Cargo.lock against scripts/deps-policy.json: every
# crate's licence is allowed, every crate comes from crates.io, every crate
# with two versions in the tree is a justified exception, and the advisories
# docs/security.md lists are still the ones in the tree. Needs only
# `cargo metadata` (no network beyond the registry, which a build uses
# anyway) and python3. Exits non-zero with one line per problem.
# DEPS_POLICY=FILE checks against another policy file.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked >"${TMPDIR:-/tmp}/parti-metadata.$$.json"
trap 'rm -f "${TMPDIR:-/tmp}/parti-metadata.$$.json"' EXIT
python3 - "${TMPDIR:-/tmp}/parti-metadata.$$.json" "${DEPS_POLICY:-scripts/deps-policy.json}" <<'PY'
import collections, json, re, sys

meta = json.load(open(sys.argv[1]))
policy = json.load(open(sys.argv[2]))
workspace = set(meta["workspace_members"])
packages = [p for p in meta["packages"] if p["id"] not in workspace]
problems = []

def licence_ok(expr, allowed):
    """Evaluates an SPDX expression (OR, AND, WITH, parentheses, and the
    legacy '/' for OR) against the allowed licence identifiers."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expr.replace("/", " OR "))
    pos = 0
    def peek():
        return tokens[pos] if pos < len(tokens) else None
    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]
    def primary():
        if peek() == "(":
            take()
            value = disjunction()
            if take() != ")":
                raise ValueError("unbalanced parentheses")
            return value
        name = take()
        if peek() == "WITH":
            take()
            name = f"{name} WITH {take()}"
        return name in allowed
    def conjunction():
        value = primary()
        while peek() == "AND":
            take()
            value = primary() and value
        return value
    def disjunction():
        value = conjunction()
        while peek() == "OR":
            take()
            value = conjunction() or value
        return value
    result = disjunction()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r}")
    return result

allowed = set(policy["licenses"]["allowed"])
lic_exceptions = policy["licenses"].get("exceptions", {})
for p in packages:
    name, expr = p["name"], p.get("license")
    if name in lic_exceptions:
        continue
    if not expr:
        problems.append(f"licence: {name} {p['version']} declares no SPDX licence")
        continue
    try:
        if not licence_ok(expr, allowed):
            problems.append(f"licence: {name} {p['version']} is {expr!r}, not allowed")
    except (ValueError, IndexError) as e:
        problems.append(f"licence: {name} {p['version']}: cannot read {expr!r} ({e})")
for name in lic_exceptions:
    if not any(p["name"] == name for p in packages):
        problems.append(f"licence: exception for {name}, which is no longer a dependency")

sources = set(policy["sources"]["allowed"])
for p in packages:
    if p.get("source") not in sources:
        problems.append(f"source: {p['name']} {p['version']} comes from {p.get('source')!r}")

versions = collections.defaultdict(set)
for p in packages:
    versions[p["name"]].add(p["version"])
dup_allowed = policy["duplicates"]["allowed"]
for name, vs in sorted(versions.items()):
    if len(vs) > 1 and name not in dup_allowed:
        problems.append(f"duplicate: {name} {sorted(vs)}: remove it or justify it in deps-policy.json")
for name in dup_allowed:
    if len(versions.get(name, ())) < 2:
        problems.append(f"duplicate: exception for {name}, which is no longer duplicated")

present = {(p["name"], p["version"]) for p in packages}
for adv in policy["advisories"]["known"]:
    if (adv["crate"], adv["version"]) not in present:
        problems.append(
            f"advisory: {adv['id']} names {adv['crate']} {adv['version']}, no longer in "
            "Cargo.lock: update deps-policy.json and docs/security.md")

for line in problems:
    print(f"check-deps: {line}", file=sys.stderr)
dups = sum(1 for vs in versions.values() if len(vs) > 1)
print(f"check-deps: {len(packages)} crates, {dups} duplicated, "
      f"{len(policy['advisories']['known'])} known advisories: "
      + ("FAILED" if problems else "ok"), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
