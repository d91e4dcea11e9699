"""The model card of an exported version: `model_card.json` for programs, `MODEL_CARD.md` for
people, both in `slam_model_card/<version>/` beside the served `card.json`.

It says how the served pair was made: the training data (folder digest, bags and cells per
label, witness rate where the generator recorded one), the pretraining method and its
configuration, the aggregator and its configuration, the validation figures and the decision
threshold, the held-out evaluation where a run has one, the checksums of both ONNX files
(and the model id `slamctl infer --expect-model` pins), the software versions, the export
time, and the intended use and known limitations. `slamctl export validate` checks that
its checksums are the served files' and that the Markdown renders its JSON.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from slamctl import contract
from slamctl.card import ServedCard, client_version
from slamctl.errors import SlamError

MODEL_CARD_JSON = "model_card.json"
MODEL_CARD_MD = "MODEL_CARD.md"

INTENDED_USE = (
    "Research use only: triage of cytology slides (bags of single-cell images) into normal or "
    "abnormal, with the cells that drove the decision, for review by a cytologist. Not a "
    "medical device; not validated for diagnosis."
)


def dataset_facts(bags_dir: Path | None) -> dict:
    """What the training folder held: its digest (every cell file's name and bytes, labels and
    split), bags and cells per label, and the synthetic generator's settings if it has them."""
    from slamctl.training.bagset import LABELS_FILE, SPLIT_FILE, load_bags

    if bags_dir is None or not Path(bags_dir).is_dir():
        return {"path": str(bags_dir) if bags_dir else None, "available": False}
    bags_dir = Path(bags_dir)
    bags = load_bags(bags_dir)
    digest = hashlib.sha256()
    for name in (LABELS_FILE, SPLIT_FILE):
        if (bags_dir / name).is_file():
            digest.update(f"{name}\0".encode() + (bags_dir / name).read_bytes())
    counts = {"normal": {"bags": 0, "cells": 0}, "abnormal": {"bags": 0, "cells": 0}}
    for bag in bags:
        label = "abnormal" if bag.label else "normal"
        counts[label]["bags"] += 1
        counts[label]["cells"] += len(bag.files)
        for f in bag.files:
            digest.update(f"{bag.bag_id}/{f.name}\0".encode() + hashlib.sha256(f.read_bytes()).digest())
    facts = {"path": str(bags_dir), "available": True, "sha256": digest.hexdigest(), "labels": counts}
    synth = bags_dir / "synth.json"
    if synth.is_file():
        generator = json.loads(synth.read_text())
        facts["synthetic"] = generator
        facts["witness_rate"] = generator.get("witness_rate")
    return facts


def read_evaluation(path: Path | None) -> dict | None:
    """`slamctl evaluate`'s summary.json, if there is one."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text())
    except ValueError as e:
        raise SlamError(f"{path}: not an evaluation summary (JSON: {e})") from None


def software_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "slamctl": client_version()}
    for package in ("torch", "onnx", "onnxruntime", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def limitations(card: dict) -> list[str]:
    """Known failure modes, from what the card records."""
    found = []
    health = card["aggregator"].get("health", {})
    if health.get("degenerate"):
        found.append(
            "Flagged degenerate by `train mil`: "
            + "; ".join(health.get("reasons", []))
            + ". It decides nothing."
        )
    data = card["training_data"]
    if data.get("synthetic"):
        found.append(
            "Trained on synthetic bags (slamctl's generator): its figures say nothing about real slides."
        )
    if not data.get("available"):
        found.append(
            "The training data folder was not available at export: its digest and counts are unknown."
        )
    if card["evaluation"] is None:
        found.append("No held-out evaluation was recorded with this export.")
    elif card["evaluation"].get("split") != "test":
        found.append(
            f"The recorded evaluation is on the {card['evaluation'].get('split') or 'all'} bags, not on "
            "held-out ones: it says little about new slides."
        )
    found.append(
        f"Decides at the threshold chosen on {card['aggregator'].get('val_bags', '?')} validation bags "
        f"({card['threshold_rule']}): few validation bags make it uncertain."
    )
    found.append(
        "Cells must be prepared as in training (same image size and crop); other stains, scanners "
        "or magnifications are untested."
    )
    return found


def build_model_card(served: ServedCard, training: dict, data: dict, evaluation: dict | None) -> dict:
    """The whole card: the served card's facts (version, threshold, checksums, ...) with how
    the pair was made (`training`: from the checkpoints, see export_pair)."""
    card = {
        "model_id": served.model_id,
        "version": served.version,
        "exported_at": served.exported_at,
        "intended_use": INTENDED_USE,
        "files": {
            f"{name}/{served.version}/model.onnx": served.sha256[name] for name in contract.ONNX_MODELS
        },
        "threshold": served.threshold,
        "threshold_rule": served.threshold_rule,
        "input_size": served.input_size,
        "image_size": served.image_size,
        "dim": served.dim,
        "features": served.features,
        "max_bag_cells": served.max_bag_cells,
        "training_data": data,
        "pretraining": training["pretraining"],
        "aggregator": training["aggregator"],
        "evaluation": evaluation,
        "software": software_versions(),
    }
    card["limitations"] = limitations(card)
    return card


def _table(rows: list[tuple[str, object]]) -> str:
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def render_markdown(card: dict) -> str:
    """MODEL_CARD.md: the JSON card for people (`export validate` re-renders and compares)."""
    data, pre, agg, ev = card["training_data"], card["pretraining"], card["aggregator"], card["evaluation"]
    labels = data.get("labels", {})
    lines = [
        f"# slamctl model {card['version']}\n\n",
        f"Model id `{card['model_id']}` (pin it with `slamctl infer --expect-model`), exported {card['exported_at']}.\n",
        "\n## Intended use\n\n",
        card["intended_use"] + "\n",
        "\n## Limitations\n\n",
        "".join(f"- {item}\n" for item in card["limitations"]),
        "\n## Decision\n\n",
        _table(
            [
                ("threshold on P(abnormal)", f"{card['threshold']:.4f}"),
                ("chosen by", card["threshold_rule"]),
                ("largest bag served", f"{card['max_bag_cells']} cells"),
                ("cell input", f"{card['image_size']} px, center crop {card['input_size']} px, RGB uint8"),
            ]
        ),
        "\n## Training data\n\n",
        _table(
            [
                ("folder", f"`{data.get('path')}`"),
                ("digest (sha256)", f"`{data['sha256']}`" if data.get("sha256") else "unknown"),
                *[(f"{label} bags / cells", f"{c['bags']} / {c['cells']}") for label, c in labels.items()],
                ("witness rate", data.get("witness_rate", "unknown")),
            ]
        ),
        "\n## Pretraining (encoder)\n\n",
        _table(
            [
                ("encoder", pre.get("encoder", "slamctl")),
                ("method", pre.get("method")),
                ("steps", pre.get("step")),
                (
                    "weights sha256" if pre.get("encoder", "slamctl") != "slamctl" else "checkpoint sha256",
                    f"`{pre.get('checkpoint_sha256')}`",
                ),
                ("configuration", f"`{json.dumps(pre.get('config'), sort_keys=True)}`"),
            ]
        ),
        "\n## Aggregator (MIL)\n\n",
        _table(
            [
                ("aggregator", agg.get("name")),
                ("features", f"{card['features']} (D = {card['dim']})"),
                ("fit / validation bags", f"{agg.get('fit_bags')} / {agg.get('val_bags')}"),
                ("best validation", json.dumps(agg.get("best"), sort_keys=True)),
                ("health", json.dumps(agg.get("health"), sort_keys=True)),
                ("checkpoint sha256", f"`{agg.get('checkpoint_sha256')}`"),
                ("configuration", f"`{json.dumps(agg.get('config'), sort_keys=True)}`"),
            ]
        ),
        "\n## Held-out evaluation\n\n"
        if ev is None or ev.get("split") == "test"
        else f"\n## Evaluation on the {ev.get('split') or 'all'} bags (not held out)\n\n",
        (
            "Not recorded.\n"
            if ev is None
            else _table([(k, v) for k, v in sorted(ev.items()) if not isinstance(v, (dict, list))])
        ),
        "\n## Files\n\n",
        _table([(f"`{path}`", f"`{digest}`") for path, digest in card["files"].items()]),
        "\n## Software\n\n",
        _table(sorted(card["software"].items())),
    ]
    return "".join(lines)


def write_model_card(folder: Path, card: dict) -> None:
    from slamctl.files import write_atomic

    text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    write_atomic(folder / MODEL_CARD_JSON, text)
    write_atomic(folder / MODEL_CARD_MD, render_markdown(json.loads(text)))  # as validate re-renders it
