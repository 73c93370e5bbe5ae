"""Operation records and their JSON Lines form."""
import json

import pytest

from bazar.chaos.history import Operation, is_out_of_stock, load_history, parse_history, save_history


def purchase(op_id=1, outcome="ok", result=None, end=2.0, **extra):
    return Operation(id=op_id, client=3, f="purchase", item=2, args={"order_id": f"k-3-{op_id}"},
                     start=1.0, end=end, outcome=outcome, result=result, **extra)


def test_save_then_load_gives_back_the_same_history(tmp_path):
    history = [
        purchase(1, result={"order_id": "k-3-1", "price": 10.0}, fault="kill"),
        purchase(2, outcome="unknown", end=None),
        Operation(3, 1, "read", 2, {"consistency": "strong"}, 2.5, 2.75, "ok",
                  {"stock": 4, "price": 10.0, "index": 123}),
        Operation(4, 2, "restock", 1, {"amount": 5}, 3.0, 3.5, "fail", {"error": "no quorum", "definite": True}),
    ]
    path = tmp_path / "history.jsonl"
    save_history(path, history)

    assert load_history(path) == history
    assert len(path.read_text().splitlines()) == 4


def test_each_line_is_the_documented_json_object(tmp_path):
    path = tmp_path / "history.jsonl"
    save_history(path, [purchase(17, result={"order_id": "k-3-17", "price": 10.0})])

    record = json.loads(path.read_text())
    assert record == {"id": 17, "client": 3, "f": "purchase", "item": 2, "args": {"order_id": "k-3-17"},
                      "start": 1.0, "end": 2.0, "outcome": "ok",
                      "result": {"order_id": "k-3-17", "price": 10.0}, "fault": None}


def test_parse_skips_blank_lines_and_fills_optional_fields():
    lines = ["", '{"id": 1, "client": 1, "f": "read", "item": 1, "start": 0, "outcome": "unknown"}', "  "]

    [operation] = parse_history(lines)

    assert operation.args == {} and operation.end is None
    assert operation.result is None and operation.fault is None


def test_a_malformed_line_is_reported_with_its_number():
    good = json.dumps(purchase().to_dict())
    with pytest.raises(ValueError, match="line 2"):
        parse_history([good, '{"id": 2, "f": "purchase"}'])
    with pytest.raises(ValueError, match="line 3"):
        parse_history([good, good, "{not json"])


@pytest.mark.parametrize("changes, message", [
    ({"f": "delete"}, "unknown function"),
    ({"outcome": "maybe"}, "unknown outcome"),
    ({"end": None}, "needs an end time"),
    ({"end": 0.5}, "before it starts"),
])
def test_invalid_operations_are_refused(changes, message):
    record = purchase().to_dict() | changes
    with pytest.raises(ValueError, match=message):
        Operation.from_dict(record)


def test_an_unknown_outcome_needs_no_end():
    assert purchase(outcome="unknown", end=None).unknown


def test_only_an_out_of_stock_failure_observes_anything():
    assert purchase(outcome="fail", result={"error": "out of stock"}).observed_out_of_stock
    assert purchase(outcome="fail", result={"error": "out_of_stock", "definite": True}).observed_out_of_stock
    assert not purchase(outcome="fail", result={"error": "no quorum", "definite": True}).observed_out_of_stock
    assert not purchase(outcome="unknown", end=None).observed_out_of_stock
    assert is_out_of_stock(" Out Of Stock ") and not is_out_of_stock(None)


def test_order_id_is_the_one_the_server_reported_else_the_one_sent():
    assert purchase(5, outcome="unknown", end=None).order_id == "k-3-5"
    renamed = purchase(6, result={"order_id": "server-6", "price": 3.0})
    assert renamed.order_id == "server-6"
    read = Operation(7, 1, "read", 2, {"consistency": "cached"}, 1.0, 2.0, "ok", {"stock": 1})
    assert read.order_id is None and read.consistency == "cached"
