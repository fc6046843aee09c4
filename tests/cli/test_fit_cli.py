"""`souk fit --option` parsing (the fits themselves are tested in tests/training)."""

import pytest

from souk.cli.fit import parse_option
from souk.errors import ConfigError
from support import FIXTURES, run_souk


def test_option_values_are_json_else_text():
    assert parse_option("dense.prf=true") == ("dense", "prf", True)
    assert parse_option("bi.lr=2e-5") == ("bi", "lr", 2e-5)
    assert parse_option("bi.band=[10, 50]") == ("bi", "band", [10, 50])
    assert parse_option("cross.base=my/model") == ("cross", "base", "my/model")
    assert parse_option("ltr.features=") == ("ltr", "features", "")
    for bad in ("dense.prf", "prf=true", ".prf=1", "dense.=1"):
        with pytest.raises(ConfigError, match="expected STAGE.KEY=VALUE"):
            parse_option(bad)


def test_an_unknown_option_is_refused_before_fitting(product_index):
    out = run_souk("fit", "--index", str(product_index), "--train", str(FIXTURES / "beir-mini"), "--split", "test",
                   "--option", "fusion.stack=true", "--json", check=False)
    assert out.returncode == 2
    assert "fusion: unknown key 'stack'; allowed:" in out.stdout
