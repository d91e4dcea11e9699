"""slamctl/card.py: the served card, one dataclass from export to client."""

import json
from dataclasses import asdict, replace

import pytest

from slamctl.card import ServedCard
from slamctl.errors import SlamError

CARD = ServedCard(
    version=3,
    threshold=0.4,
    threshold_rule="best F1 on 20 validation bags",
    input_size=32,
    image_size=40,
    dim=16,
    features="h",
    aggregator="maxmil",
    max_bag_cells=20_000,
    degenerate=False,
    health={"degenerate": False, "reasons": []},
    sha256={"slam_encoder": "a" * 64, "mil_aggregator": "b" * 64},
    config_sha256={"slam_encoder": "c" * 64},
    precision={"slam_encoder": "fp32", "mil_aggregator": "fp32"},
    device="gpu",
    exported_at="2026-12-03T12:00:00+00:00",
)


def test_round_trip_and_the_model_id_covers_what_decides():
    assert ServedCard.from_json(CARD.to_json(), "card.json") == CARD
    assert replace(CARD, threshold=0.5).model_id != CARD.model_id
    assert replace(CARD, exported_at="later", version=4).model_id == CARD.model_id  # not deciding


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dim": "16"}, "card.json: model card field dim: expected int, got '16'"),
        ({"degenerate": 0}, "model card field degenerate: expected bool, got 0"),
        ({"threshold": True}, "model card field threshold: expected float, got True"),
        ({"sha256": None}, "model card field sha256: expected dict, got None"),
    ],
)
def test_a_field_of_the_wrong_type_is_one_line_naming_it(change, message):
    with pytest.raises(SlamError, match=message.replace("(", r"\(")):
        ServedCard.from_json(json.dumps({**asdict(CARD), **change}), "card.json")


def test_missing_fields_and_non_cards_are_named():
    partial = {k: v for k, v in asdict(CARD).items() if k not in ("health", "device")}
    with pytest.raises(SlamError, match="card.json: the model card lacks health, device"):
        ServedCard.from_json(json.dumps(partial), "card.json")
    with pytest.raises(SlamError, match="not a JSON object"):
        ServedCard.from_json("[1, 2]", "card.json")
    with pytest.raises(SlamError, match="is not JSON"):
        ServedCard.from_json(b"\xff", "card.json")
