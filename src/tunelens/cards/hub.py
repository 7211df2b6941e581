"""Hub validity of card metadata, checked offline.

``huggingface_hub``'s own ``RepoCard.validate`` posts the YAML to the Hub (network only), so cards are
checked here with the library's offline pieces: ``validate_repo_id`` for every repo id
(``base_model``, ``datasets``, ``source_datasets``), ``model_index_to_eval_results`` for the
``model-index`` (the format ``EvalResult`` writes), and the Hub's licence ids.
"""

from __future__ import annotations

import re
from typing import Any

from tunelens.errors import TunelensError

# https://huggingface.co/docs/hub/repositories-licenses (the identifiers a card's `license` may hold)
HUB_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib
pddl lgpl-lr llama2 llama3 llama3.1 llama3.2 gemma unknown other
""".split())
_LICENSE_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")  # `license_name` is an id like `my-license-1.0`


def is_repo_id(value: Any) -> bool:
    """True when ``value`` passes huggingface_hub's repo-id validation (``org/name`` or ``name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(value, str) or not value:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def card_license(licences: list[str]) -> tuple[str, str | None]:
    """(``license``, ``license_name``) for a model or dataset of the given record licences: the one Hub
    licence id when there is exactly one the Hub knows, else ``other`` with an id naming the mix."""
    ids = sorted({str(x).lower() for x in licences})
    if len(ids) == 1 and ids[0] in HUB_LICENSES:
        return ids[0], None
    slug = re.sub(r"[^a-z0-9.+-]+", "-", "-".join(ids)).strip("-") or "unknown"
    return "other", (f"mixed-{slug}" if len(ids) > 1 else slug)


def _repo_ids(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def metadata_problems(meta: dict[str, Any], kind: str = "model") -> list[str]:
    """What the Hub would reject in a card's metadata (an empty list: nothing found)."""
    problems = []
    keys = ("base_model", "datasets") if kind == "model" else ("source_datasets",)
    for key in keys:
        for value in _repo_ids(meta.get(key)):
            if not is_repo_id(value):
                problems.append(f"{key}: {value!r} is not a Hub repo id")
    licences = _repo_ids(meta.get("license"))
    for value in licences:
        if value not in HUB_LICENSES:
            problems.append(f"license: {value!r} is not a Hub licence id (use 'other' with license_name)")
    if "other" in licences and kind == "model":
        name = meta.get("license_name")
        if not isinstance(name, str) or not _LICENSE_NAME.match(name):
            problems.append(f"license_name: {name!r} must be an id like 'my-license-1.0' when license is 'other'")
    if kind == "model" and meta.get("model-index") is not None:
        from huggingface_hub.repocard_data import model_index_to_eval_results

        try:
            _, results = model_index_to_eval_results(meta["model-index"])
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"model-index: not in the format EvalResult writes ({type(exc).__name__}: {exc})")
        else:
            for r in results:
                if r.dataset_type is None or r.metric_type is None or r.metric_value is None:
                    problems.append(f"model-index: a result lacks its dataset type, metric type or value: {r}")
    return problems


def check_metadata(meta: dict[str, Any], kind: str, where: str) -> None:
    """Raise a TunelensError listing every problem :func:`metadata_problems` finds."""
    problems = metadata_problems(meta, kind)
    if problems:
        raise TunelensError(f"{where}: the Hub would reject this {kind} card's metadata: " + "; ".join(problems))
