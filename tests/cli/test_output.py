import json

import pytest

from souk.cli.output import emit_json


@pytest.mark.parametrize("text", ["a\x85b", "a\u2028b", "a\u2029b", "a\nb\x0bc", "蛋糕"])
def test_emit_json_stays_one_line_for_every_reader(capsys, text):
    emit_json({"query": text, "score": float("nan")})
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    assert json.loads(out.splitlines()[-1]) == {"query": text, "score": None}
