"""slurmpy_plugins._config in-process: the limits of timeout= and reload=
(the cases that fail closed through the plugin are in test_prep_host.py)."""
from __future__ import annotations

import pytest

from slurmpy_plugins._config import ConfigError, parse


def _parse(extra: str):
    return parse("handler=m:C,path=/etc/slurm," + extra, conf_key="PrEpParameters",
                 conf_path=None)


@pytest.mark.parametrize("item,attr,value", [
    ("timeout=86400", "timeout", 86400.0),
    ("timeout=0.001", "timeout", 0.001),
    ("reload=0", "reload", 0.0),
    ("reload=86400", "reload", 86400.0),
])
def test_limits_are_inclusive(item, attr, value):
    assert getattr(_parse(item), attr) == value


@pytest.mark.parametrize("item", ["timeout=86400.5", "timeout=1e10", "timeout=inf",
                                  "reload=86401", "reload=1e300", "reload=inf"])
def test_beyond_a_day_is_refused_naming_key_and_range(item):
    key, _, value = item.partition("=")
    with pytest.raises(ConfigError, match=r"^PrEpParameters: %s='%s' is out of range: "
                       r"it must be .* 86400 seconds$" % (key, value)):
        _parse(item)
