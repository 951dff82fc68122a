#!/usr/bin/env python3
"""Compare Tollgate's shipped price table (seed.toml) with LiteLLM's public price JSON.

What it does: for every `[[price]]` row of `schemas/prices/seed.toml` it finds the LiteLLM entry for the same
provider and model, converts LiteLLM's per-token float prices to per-million decimal strings exactly
(`Decimal(repr(x)) * 1_000_000`, normalised; no float arithmetic) and prints, per class (input, cached_read,
cache_write, output, reasoning), our value next to LiteLLM's:

    ok       both state the same price (or neither states it and the fallbacks agree)
    DIFF     both state a price and they differ
    ADD      we leave the class out (so it is charged at `input` / `output`), LiteLLM states another price
    ours     we state the class, LiteLLM does not (not a disagreement: LiteLLM then charges input/output)
    n/c      not comparable: our row is not in USD and LiteLLM only has USD prices
    absent   LiteLLM has no entry for this provider and model

A second section lists LiteLLM model ids that seed.toml's rule prices with a *shorter* row (the id is that row's
model followed by a version tag: `-2024-05-13`, `@20251101`, `-20250929-v1:0`, `-latest`, ...) at a price LiteLLM
does not give them: silent mispricing, so each one fails `--strict` (give the snapshot a row of its own).

A third section, for information, lists the LiteLLM ids that a loose prefix rule (any `-`, `@`, `:`, `.` or `/`
after a row's model: the rule before table version 2026-11-26.2) would price with another model's row and that
the version-tag rule leaves unpriced (`price_missing` in the gateway), seed.toml having no row for them, with
LiteLLM's price and mode: candidates for rows of their own (audio, search, responses-only, ... are left out on
purpose).

LiteLLM entry chosen for a row: the exact model id under the provider's key prefix, else its versions (the id
followed by a version tag, as `is_version_tag` in schemas/src/price.rs defines it). Provider kinds map to LiteLLM
as `KINDS` says; kinds with no LiteLLM counterpart (qianfan, qianfan-v1, zeroone, modelarts, sophnet) are reported
as absent.

How to run (Python >= 3.11, standard library only; LiteLLM itself is not needed, only its JSON):

    pip download litellm==1.110.2 --no-deps -d /tmp/litellm-dl
    unzip -o /tmp/litellm-dl/litellm-*.whl 'litellm/model_prices_and_context_window_backup.json' -d /tmp/litellm-dl
    python3 schemas/prices/check_against_litellm.py \
        /tmp/litellm-dl/litellm/model_prices_and_context_window_backup.json [--seed schemas/prices/seed.toml] [--strict]

`--strict` exits 1 if any comparable class is DIFF or ADD (in the first or the second section), except the
disagreements seed.toml keeps on purpose (`KEPT` below; the table's header says why). Written against litellm
1.110.2 (the JSON's sha256 8943af58bf9f979c6a4bef815687117ffa341e462a41faed9be17b5c33d3dcc2); the JSON is
MIT-licensed with the rest of LiteLLM outside its `enterprise/` directory. LiteLLM is a secondary source: a DIFF
is a reason to check the provider's own price page, which the JSON's `source` field usually names.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

CLASSES = ("input", "cached_read", "cache_write", "output", "reasoning")
# Our class -> LiteLLM's per-token field.
LITELLM_FIELD = {
    "input": "input_cost_per_token",
    "cached_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "output": "output_cost_per_token",
    "reasoning": "output_cost_per_reasoning_token",
}
# A class left out is charged at this class's price (seed.toml's rule; LiteLLM's cost calculator does the same).
FALLBACK = {"cached_read": "input", "cache_write": "input", "reasoning": "output"}

# Our provider kind -> (LiteLLM `litellm_provider` values, key prefixes to strip, longest first).
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openai": (("openai",), ("openai/", "")),
    "azure": (("azure",), ("azure/",)),
    "anthropic": (("anthropic",), ("anthropic/", "")),
    "gemini": (("gemini",), ("gemini/",)),
    "vertex": (("vertex_ai*",), ("vertex_ai/", "")),
    "bedrock": (("bedrock", "bedrock_converse"), ("bedrock/us-east-1/", "bedrock/converse/", "bedrock/", "")),
    "dashscope": (("dashscope",), ("dashscope/",)),
    "dashscope-native": (("dashscope",), ("dashscope/",)),
    "moonshot": (("moonshot",), ("moonshot/",)),
    "zhipu": (("zai", "bigmodel"), ("zai/", "bigmodel/")),
    "hunyuan": (("tencent",), ("tencent/",)),
    "hunyuan-native": (("tencent",), ("tencent/",)),
}

# What may follow a row's model id in the id of a version of the same model: seed.toml's rule, mirroring
# `is_version_tag` in schemas/src/price.rs. One or more tags, each after `-`, `@` or `:`: a date YYYY-MM-DD, a run of
# at least three digits, `v<digits>` (optionally `:<digits>`), `latest` or `default`.
_TAG = r"(?:\d{4}-\d{2}-\d{2}|\d{3,}|v\d+(?::\d+)?|latest|default)"
VERSION_TAG = re.compile(rf"^(?:[-@:]{_TAG})+$")
# The loose rule before table version 2026-11-26.2 (any of these after a row's model), for the third section only.
LOOSE_SEPARATORS = ("-", "@", ":", ".", "/")
# Disagreements seed.toml keeps on purpose (its header says why): shown as `kept`, not failing --strict.
KEPT = {("vertex", "claude-3-5-haiku")}


def per_million(x: float | None) -> str | None:
    """LiteLLM's per-token float as an exact per-million decimal string ("2.5", "0.075", "0")."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    d = (Decimal(repr(x)) * 1_000_000).normalize()
    return format(d, "f")


def norm(s: str | None) -> Decimal | None:
    return None if s is None else Decimal(s)


def provider_matches(kind: str, litellm_provider: str | None) -> bool:
    if not litellm_provider:
        return False
    for p in KINDS[kind][0]:
        if p.endswith("*") and litellm_provider.startswith(p[:-1]):
            return True
        if litellm_provider == p:
            return True
    return False


def model_ids(kind: str, prices: dict) -> dict[str, tuple[str, dict]]:
    """LiteLLM entries of `kind`, by model id (key with the provider prefix stripped) -> (key, entry)."""
    out: dict[str, tuple[str, dict]] = {}
    for key, entry in prices.items():
        if not isinstance(entry, dict) or not provider_matches(kind, entry.get("litellm_provider")):
            continue
        for prefix in KINDS[kind][1]:
            if key.startswith(prefix):
                mid = key[len(prefix) :]
                break
        else:
            continue
        if "/" in mid:  # another namespace (azure/eu/..., bedrock/us-gov-west-1/...): other prices
            continue
        out.setdefault(mid, (key, entry))
    return out


def is_version_tag(rest: str) -> bool:
    """Whether `rest` (what follows a row's model id) names a version of the same model."""
    return VERSION_TAG.match(rest) is not None


def lookup(rows: list[dict], kind: str, model: str, loose: bool = False) -> dict | None:
    """seed.toml's rule: the exact row, else the longest row that `model` extends by a version tag only.

    `loose`: the rule before table version 2026-11-26.2 instead (any separator after the row's model)."""
    best = None
    for r in rows:
        if r["provider"] != kind:
            continue
        if r["model"] == model:
            return r
        rest = model[len(r["model"]) :] if model.startswith(r["model"]) else None
        fits = rest and (rest.startswith(LOOSE_SEPARATORS) if loose else is_version_tag(rest))
        if fits and (best is None or len(r["model"]) > len(best["model"])):
            best = r
    return best


def ours(row: dict, cls: str) -> tuple[str | None, str]:
    """(stated value or None, effective value)."""
    stated = row.get(cls)
    if stated is not None:
        return stated, stated
    return None, row[FALLBACK[cls]]


def theirs(entry: dict, cls: str) -> tuple[str | None, str | None]:
    stated = per_million(entry.get(LITELLM_FIELD[cls]))
    if stated is not None:
        return stated, stated
    if cls in FALLBACK:
        return None, per_million(entry.get(LITELLM_FIELD[FALLBACK[cls]]))
    return None, None


def compare(row: dict, entry: dict) -> list[tuple[str, str, str, str]]:
    """[(class, ours, theirs, status)] for one row and one LiteLLM entry."""
    result = []
    for cls in CLASSES:
        o_stated, o_eff = ours(row, cls)
        t_stated, t_eff = theirs(entry, cls)
        if o_stated is None and t_stated is None:
            continue  # both fall back to input / output: compared there
        if norm(o_eff) == norm(t_eff):
            status = "ok"
        elif t_stated is None:
            status = "ours"
        elif o_stated is None:
            status = "ADD"
        else:
            status = "DIFF"
        result.append((cls, o_stated or f"({o_eff})", t_stated or f"({t_eff})", status))
    return result


def tiers(entry: dict) -> list[str]:
    """Names of LiteLLM's context-size tiers on this entry (e.g. `above_200k_tokens`)."""
    names = set()
    for k in entry:
        m = re.search(r"_(above_\d+k?_tokens)$", k)
        if m and "cost" in k:
            names.add(m.group(1))
    return sorted(names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("litellm_json", type=Path, help="litellm/model_prices_and_context_window_backup.json")
    ap.add_argument("--seed", type=Path, default=Path(__file__).with_name("seed.toml"))
    ap.add_argument("--strict", action="store_true", help="exit 1 on any DIFF or ADD")
    args = ap.parse_args()

    seed = tomllib.loads(args.seed.read_text())
    rows = seed["price"]
    prices = json.loads(args.litellm_json.read_text())
    by_kind = {k: model_ids(k, prices) for k in KINDS}

    print(f"seed.toml version {seed.get('version')}, {len(rows)} rows; LiteLLM JSON {args.litellm_json}")
    print(f"{'provider':<16} {'model':<36} {'LiteLLM key':<52} {'class':<12} {'ours':>10} {'LiteLLM':>10}  status")
    problems = 0
    counts = {"ok": 0, "DIFF": 0, "ADD": 0, "ours": 0, "n/c": 0, "absent": 0}
    for row in rows:
        kind, model = row["provider"], row["model"]
        ids = by_kind.get(kind, {})
        matches = []
        if model in ids:
            matches.append(ids[model])
        else:
            for mid in sorted(ids):
                if mid.startswith(model) and is_version_tag(mid[len(model) :]):
                    matches.append(ids[mid])
        head = f"{kind:<16} {model:<36}"
        if not matches:
            print(f"{head} {'-':<52} {'':<12} {'':>10} {'':>10}  absent")
            counts["absent"] += 1
            continue
        for key, entry in matches:
            if row["currency"] != "USD":
                print(f"{head} {key:<52} {'*':<12} {row['currency']:>10} {'USD':>10}  n/c (currency)")
                counts["n/c"] += 1
                continue
            for cls, o, t, status in compare(row, entry):
                if status in ("DIFF", "ADD") and (kind, model) in KEPT:
                    status = f"{status} (kept)"
                elif status in ("DIFF", "ADD"):
                    problems += 1
                counts[status.split()[0]] += 1
                print(f"{head} {key:<52} {cls:<12} {o:>10} {t:>10}  {status}")
            blank = f"{head} {key:<52} {'':<12} {'':>10} {'':>10} "
            if tiers(entry):
                print(f"{blank} note: also priced {', '.join(tiers(entry))}")
            if entry.get("deprecation_date"):
                print(f"{blank} note: deprecation_date {entry['deprecation_date']}")
            if entry.get("source"):
                print(f"{blank} source: {entry['source']}")

    print()
    print("LiteLLM ids seed.toml prices with a shorter row (a version of its model) at another price (fail --strict):")
    print(f"{'provider':<16} {'LiteLLM key':<52} {'our row':<36} {'class':<12} {'ours':>10} {'LiteLLM':>10}  status")
    mispriced = listed = 0
    for kind, ids in by_kind.items():
        for mid, (key, entry) in sorted(ids.items()):
            row = lookup(rows, kind, mid)
            if row is None or row["model"] == mid or row["currency"] != "USD":
                continue
            for cls, o, t, status in compare(row, entry):
                if status not in ("DIFF", "ADD"):
                    continue
                if (kind, row["model"]) in KEPT:
                    status = f"{status} (kept)"
                else:
                    mispriced += 1
                listed += 1
                print(f"{kind:<16} {key:<52} {row['model']:<36} {cls:<12} {o:>10} {t:>10}  {status}")
    if not listed:
        print("(none)")
    problems += mispriced

    print()
    print("LiteLLM ids seed.toml leaves unpriced (price_missing) that the loose prefix rule would price by another")
    print("model's row (information; responses-only, audio, search, image models have no row on purpose):")
    print(f"{'provider':<16} {'LiteLLM key':<60} {'loose rule row':<36} {'LiteLLM in/out':>18}  mode")
    for kind, ids in by_kind.items():
        for mid, (key, entry) in sorted(ids.items()):
            if lookup(rows, kind, mid) is not None:
                continue
            was = lookup(rows, kind, mid, loose=True)
            if was is None or was["currency"] != "USD":
                continue
            t_in = per_million(entry.get("input_cost_per_token"))
            t_out = per_million(entry.get("output_cost_per_token"))
            print(
                f"{kind:<16} {key:<60} {was['model']:<36} {str(t_in) + '/' + str(t_out):>18}  {entry.get('mode', '?')}"
            )

    print()
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 1 if args.strict and problems else 0


if __name__ == "__main__":
    sys.exit(main())
