"""Every config field with a rule (vitlab.config.FIELD_RULES) is checked by every config that has it:
model configs of every family, the training recipes, and a config read back from a checkpoint."""

import dataclasses

import pytest

import vitlab
from vitlab import ConfigError
from vitlab.config import CONFIG_KINDS, FIELD_RULES, config_from_dict, config_to_dict
from vitlab.training import PretrainConfig, TrainConfig

BAD = {  # a wrong value per kind of rule
    "positive (a finite number > 0)": [float("nan"), float("inf"), 0.0, -1.0, "2"],
    "in [0, 1) (a finite number)": [float("nan"), 1.0, -0.1],
    "True or False": [1, "true", None],
    "an int >= 0 (0 = no head)": [-1, 2.5, True],
}


def _cases():
    for kind, cls in sorted(CONFIG_KINDS.items()) + [("train", TrainConfig), ("pretrain", PretrainConfig)]:
        for field in dataclasses.fields(cls):
            rule = FIELD_RULES.get(field.name)
            for value in BAD.get(rule[0], []) if rule else []:
                yield pytest.param(cls, field.name, value, id=f"{kind}.{field.name}={value!r}")


@pytest.mark.parametrize("cls, field, value", list(_cases()))
def test_a_bad_number_or_flag_is_refused_naming_the_class_and_field(cls, field, value):
    with pytest.raises(ConfigError, match=f"{cls.__name__}.{field} must be"):
        cls(**{field: value})


def test_every_model_family_is_covered():
    covered = {case.values[0] for case in _cases()}
    assert set(CONFIG_KINDS.values()) <= covered | {vitlab.ResNetConfig}  # the ResNet has only small_stem
    assert vitlab.ResNetConfig in {case.values[0] for case in _cases() if case.values[1] == "small_stem"}


def test_a_config_read_back_from_a_checkpoint_gets_the_same_check():
    data = config_to_dict(vitlab.get_preset("fmnist-vit"))
    data["config"]["norm_eps"] = float("nan")
    with pytest.raises(ConfigError, match="ViTConfig.norm_eps must be positive"):
        config_from_dict(data)
