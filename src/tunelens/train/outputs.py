"""Run records: the resolved config, the manifest and the loss curve."""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tunelens.train.hardware import Precision, hardware_summary

LIBRARIES = ("tunelens", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_manifest(config: Any, precision: Precision, model_id: str, revision: str | None, model_path: Path,
                   memory: dict[str, Any], supervised_head: bool, world_size: int,
                   distributed_backend: str | None = None) -> None:
    import yaml

    from tunelens.models import model_fingerprint
    from tunelens.models.base import describe_base
    from tunelens.train.data import file_sha256

    out = config.out
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": config.method,
        "model": {"spec": config.model, "id": model_id, "revision": revision, "path": str(model_path),
                  "fingerprint": model_fingerprint(model_path),
                  # the portable description of the base (tunelens.models.base): hub id, what the weights were
                  "base": describe_base(config.model, model_path, revision)},
        "data": [{"path": str(Path(p).resolve()), "sha256": file_sha256(Path(p))} for p in config.data],
        "seed": config.seed,
        "precision": {"name": precision.name, "reason": precision.reason},
        "supervised_head": supervised_head,
        "world_size": world_size,
        "distributed_backend": distributed_backend,
        "hardware": hardware_summary(),
        "memory": memory,
        "libraries": library_versions(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def manifest_base(out: Path) -> dict[str, Any]:
    """The base record that write_manifest stored in OUT/manifest.json."""
    from tunelens.errors import TunelensError

    path = Path(out) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["model"]["base"]
    except (OSError, ValueError, KeyError) as exc:
        raise TunelensError(f"{path}: no base record (model.base): {exc}") from None


def write_loss_curve(metrics: Path, png: Path, method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics.read_text(encoding="utf-8").splitlines() if ln.strip()] \
        if metrics.is_file() else []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="." if len(rows) < 50 else None)
    else:
        ax.text(0.5, 0.5, "no logged steps", ha="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(f"{method.upper()} training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
