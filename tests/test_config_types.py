"""Every configuration key is typed: a value of the wrong type is refused, naming the key."""

from dataclasses import fields
from typing import Union, get_args, get_origin, get_type_hints

import pytest

from learningchain.config import TrainConfig, parse_set
from learningchain.errors import ConfigError
from learningchain.network.config import NetworkConfig


def _wrong_values(tp):
    """Values of the wrong type for a field annotated ``tp``."""
    if get_origin(tp) is Union:
        (tp,) = [a for a in get_args(tp) if a is not type(None)]
    if tp is bool:
        return ["false", "true", 0, 1, 1.0]
    if tp is int:
        return ["3", True, 2.5]
    if tp is float:
        return ["0.3", True, [1.0]]
    if tp is str:
        return [3, True, ["a"]]
    if tp is dict:
        return ["{}", [1], 3]
    if get_origin(tp) is tuple:
        (elem, _) = get_args(tp)
        # a float takes an integer (alphas = [1, 10] is fine): a boolean is never a number
        return ["100", 100, [True] if elem in (int, float) else [1]]
    raise AssertionError(f"no wrong values for {tp!r}")


@pytest.mark.parametrize("cls", [TrainConfig, NetworkConfig])
def test_every_key_refuses_a_value_of_the_wrong_type(cls):
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    assert len(names) > 10
    for name in names:
        for bad in _wrong_values(hints[name]):
            with pytest.raises(ConfigError) as info:
                cls.from_dict({name: bad})
            message = str(info.value)
            assert f"{name} must be" in message and repr(bad)[:10] in message, (name, bad, message)


def test_the_message_names_key_value_and_type():
    with pytest.raises(ConfigError, match=r"^no_dp must be true or false, got 'false' \(a string\)$"):
        TrainConfig.from_dict({"no_dp": "false"})
    with pytest.raises(ConfigError, match=r"^epsilon must be a number, got '0.3' \(a string\)$"):
        TrainConfig.from_dict({"epsilon": "0.3"})
    with pytest.raises(ConfigError, match=r"^\[network\] peer_exchange must be true or false"):
        NetworkConfig.from_dict({"peer_exchange": "no"})


def test_right_types_pass_and_a_float_key_takes_an_integer():
    cfg = TrainConfig.from_dict({"epsilon": 1, "lr": 2, "holders": 4, "no_dp": False, "hidden": [8, 4], "model": "mlp",
                                 "attack_options": {}, "rpc_url": None})
    assert cfg.epsilon == 1 and cfg.hidden == (8, 4)
    assert NetworkConfig.from_dict({"ban_seconds": 5, "peer_exchange": False}).ban_seconds == 5.0


@pytest.mark.parametrize("raw,value", [("true", True), ("True", True), ("yes", True), ("1", True),
                                       ("false", False), ("False", False), ("NO", False), ("0", False)])
def test_set_reads_boolean_spellings_for_boolean_keys_only(raw, value):
    assert parse_set([f"no_dp={raw}"]) == {"no_dp": value}
    assert parse_set([f"network.peer_exchange={raw}"]) == {"network.peer_exchange": value}


def test_set_keeps_a_quoted_boolean_a_string_and_numbers_numbers():
    assert parse_set(['no_dp="false"']) == {"no_dp": "false"}
    assert parse_set(["holders=1", "dataset=mnist", "epsilon=0.3"]) == {"holders": 1, "dataset": "mnist",
                                                                       "epsilon": 0.3}
    with pytest.raises(ConfigError, match="no_dp must be true or false"):
        TrainConfig.from_dict(parse_set(['no_dp="false"']))
