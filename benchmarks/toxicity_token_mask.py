"""How many random keys toxicity's token mask leaves for the classifier, and which real texts its digit-free case
(added 2026-12-07 after a CI run drew a URL-safe key without a digit) masks. The mask as first adopted for version 3
is the same rule restricted to tokens with a digit.

    .venv/bin/python benchmarks/toxicity_token_mask.py --data-dir ../shared/data

Prints, per key length, the share of seeded random URL-safe keys left unmasked now and by the first rule; then, per
training and held-out set of the toxicity card, the tokens the digit-free case masks (none in a training set means
the trained model is unchanged).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import random
from pathlib import Path

from tunelens.safety import train_toxicity as tt
from tunelens.safety.instruments import toxicity as tox


def _first_rule(token: str) -> bool:
    return tox._random_looking(token) and any(c.isdigit() for c in token)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--n", type=int, default=200_000)
    a = ap.parse_args()
    rng = random.Random(0)
    keys = {}
    for n_bytes in (12, 16, 24, 32):  # 16, 22 (unpadded), 32 and 43 characters
        ks = [base64.urlsafe_b64encode(rng.randbytes(n_bytes)).decode().rstrip("=") for _ in range(a.n)]
        keys[len(ks[0])] = {
            "unmasked_now": sum(not tox._random_looking(k) for k in ks) / a.n,
            "unmasked_first_rule": sum(not _first_rule(k) for k in ks) / a.n,
        }
    changed = {}
    for name, s in tt.build_sets(a.data_dir).items():
        hits = []
        for text in s["texts"]:
            text = tox._URL.sub(" ", html.unescape(tox._ENTITY_NUM.sub(" ", text)))
            hits += [m.group(0) for m in tox._TOKEN.finditer(text)
                     if tox._random_looking(m.group(0)) and not _first_rule(m.group(0))]
        if hits:
            changed[name] = hits
    print(json.dumps({"keys_by_length": keys, "digit_free_case_masks": changed}, indent=1))


if __name__ == "__main__":
    main()
