"""Config fuzzing over the schema: every invalid value is a ConfigError naming its key, never a crash in training.

Values of every kind (wrong types, negative and huge numbers, NaN and infinity, unknown choices,
nested structures, YAML-looking strings) go into every leaf of ``schema_fields()``. A config that
is accepted must also be one the Trainer accepts (its TrainingArguments build, its seed seeds).
"""

from __future__ import annotations

import math
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transformers import set_seed

from ftkit.config import Config, load_config, schema_fields
from ftkit.errors import ConfigError, FtkitError

from ftkit.engine.arguments import training_arguments

FIELDS = schema_fields()
KEYS = [key for key, _, _ in FIELDS]
FUZZ = settings(max_examples=100, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)

scalar = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300]),
    st.text(max_size=12),
    st.sampled_from(["auto", "", " ", "1e-4", "nan", "inf", "-5", "null", "[1, 2]", "{a: 1}", "yes", "2001-01-01",
                     "full", "lora", "ner", "cuda", "cosine", "bf16", "../../etc/passwd"]),
)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=6)


def nested(key: str, item: object) -> dict:
    head, _, rest = key.partition(".")
    return {head: nested(rest, item) if rest else item}


def assert_trainable(config: Config) -> None:
    """What training does first with a config: build TrainingArguments and seed every generator."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            training_arguments(config, Path(folder))
        except FtkitError:
            pass  # refused with a message (a CUDA device that is not there), not a crash
    set_seed(config.training.seed)


@FUZZ
@given(key=st.sampled_from(KEYS), item=value)
def test_any_value_in_any_field_is_accepted_as_trainable_or_refused_naming_the_key(key, item):
    try:
        config = Config.from_dict(nested(key, item))
    except ConfigError as exc:
        assert key in str(exc) or key.rsplit(".", 1)[-1] in str(exc), exc
        return
    if key.startswith(("training.", "adapter.")) or key in ("task",):
        assert_trainable(config)


@FUZZ
@given(items=st.dictionaries(st.sampled_from(KEYS), value, min_size=2, max_size=6))
def test_several_fields_at_once_give_a_config_or_a_config_error(items):
    data: dict = {}
    for key, item in items.items():
        head, _, leaf = key.rpartition(".")
        (data.setdefault(head, {}) if head else data)[leaf] = item
    try:
        Config.from_dict(data)
    except ConfigError as exc:
        assert str(exc).strip()


@FUZZ
@given(key=st.sampled_from(KEYS), text=st.text(max_size=20))
def test_command_line_overrides_of_any_text_give_a_config_or_a_config_error(key, text):
    try:
        load_config(overrides=[f"{key}={text}"])
    except ConfigError as exc:
        assert str(exc).strip()


@FUZZ
@given(data=st.dictionaries(st.text(max_size=10), value, max_size=4))
def test_unknown_keys_and_shapes_at_the_top_are_config_errors(data):
    try:
        Config.from_dict(data)
    except ConfigError as exc:
        assert str(exc).strip()
    else:
        assert set(data) <= {f.name for f in Config.__dataclass_fields__.values()}


@settings(max_examples=30, deadline=timedelta(seconds=5), derandomize=True)
@given(key=st.sampled_from([k for k, hint, _ in FIELDS if hint in (float, float | None)]),
       bad=st.sampled_from([math.nan, math.inf, -math.inf, "nan", "inf"]))
def test_non_finite_numbers_are_refused(key, bad):
    try:
        Config.from_dict(nested(key, bad))
    except ConfigError as exc:
        assert key in str(exc)
    else:
        raise AssertionError(f"{key}={bad!r} was accepted")


def test_a_seed_outside_what_numpy_accepts_is_refused():
    for seed in (-1, 2**32, 2**64):
        try:
            Config.from_dict({"training": {"seed": seed}})
        except ConfigError as exc:
            assert "training.seed" in str(exc)
        else:
            raise AssertionError(f"seed {seed} was accepted")
