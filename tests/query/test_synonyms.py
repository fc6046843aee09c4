import os

import pytest

from souk.errors import ConfigError
from souk.query.synonyms import DEFAULT_WEIGHT, Synonyms


def texts(expansions):
    return [e.text for e in expansions]


def test_chocolate_variants_expand_to_each_other_in_the_shipped_set():
    syn = Synonyms.shipped()
    assert {"巧克力", "chocolate"} <= set(texts(syn.expand("朱古力")))
    assert {"朱古力", "chocolate"} <= set(texts(syn.expand("巧克力饼干")))  # a Han term matches inside words
    assert "巧克力" in texts(syn.expand("朱古力 威化餅"))  # traditional input is normalized
    assert all(e.weight == DEFAULT_WEIGHT for e in syn.expand("朱古力"))
    assert 60 <= len(syn) <= 150


def test_qiaokeli_and_zhuguli_meet_in_the_demo_catalog(demo_index):
    from souk.index import Index
    from souk.query.plan import Planner

    searcher = Index.open(demo_index).searcher()
    planner = Planner(searcher, ["syntax", "synonyms"])

    def ids(query, expand):
        plan = planner.plan(query)
        expansions = [(e.text, e.weight) for e in plan.expansions] if expand else []
        return set(searcher.bm25(plan.text, 500, expansions=expansions).ids)

    qiaokeli, zhuguli = ids("巧克力", False), ids("朱古力", False)
    assert len(qiaokeli) == 40 and len(zhuguli) == 71
    assert zhuguli <= ids("巧克力", True) and qiaokeli <= ids("朱古力", True)
    plan = planner.plan("朱古力")
    assert {(e.text, e.weight, e.source) for e in plan.expansions} >= {("巧克力", 0.5, "synonyms")}
    assert plan.text == "朱古力" and plan.notes == ["synonyms: 朱古力 -> 巧克力; 朱古力 -> chocolate"]


def test_synonyms_step_options(tmp_path):
    from souk.query.synonyms import SynonymRewriter

    (tmp_path / "my.txt").write_text("[en]\ntv => television\n")
    step = SynonymRewriter(None, {"file": str(tmp_path / "my.txt"), "languages": ["en"]})
    assert step.path == tmp_path / "my.txt"
    with pytest.raises(ConfigError, match="query.synonyms: unknown key .weights."):
        SynonymRewriter(None, {"weights": 1})
    with pytest.raises(ConfigError, match="does not exist"):
        SynonymRewriter(None, {"file": str(tmp_path / "nope.toml")})


def test_one_way_rules_expand_one_direction_only(tmp_path):
    path = tmp_path / "syn.toml"
    path.write_text('[en]\nrules = ["tv => television", "sofa, couch"]\n', encoding="utf-8")
    syn = Synonyms.load(path)
    assert texts(syn.expand("TV stand")) == ["television"]
    assert syn.expand("television stand") == []
    assert texts(syn.expand("couch")) == ["sofa"] and texts(syn.expand("sofa")) == ["couch"]


def test_weights_default_file_level_and_per_rule(tmp_path):
    path = tmp_path / "syn.toml"
    path.write_text('weight = 0.3\n[en]\nrules = ["fridge, refrigerator", {rule = "tv => television", weight = 0.8}]\n')
    syn = Synonyms.load(path)
    assert [(e.text, e.weight) for e in syn.expand("fridge")] == [("refrigerator", 0.3)]
    assert [(e.text, e.weight) for e in syn.expand("tv")] == [("television", 0.8)]


def test_multi_word_rules_match_word_sequences_and_whole_words_only():
    syn = Synonyms.shipped()
    assert {"cellphone", "cell phone"} <= set(texts(syn.expand("Mobile Phone case")))
    assert "nappy" in texts(syn.expand("diapers size 4"))  # stems: diapers matches diaper
    assert syn.expand("tvs") == [] and syn.expand("phone") == []
    foil = syn.expand("aluminum foil")  # the longest rule wins over aluminum/aluminium
    assert "tin foil" in texts(foil) and "aluminium" not in texts(foil)
    assert syn.expand("cell phone") and "cell phone" not in texts(syn.expand("cell phone"))


def test_tokens_are_matched_like_text():
    syn = Synonyms.shipped()
    assert texts(syn.expand(["番茄", "酱"])) == ["番茄沙司"]
    assert texts(syn.expand(["mobile", "phone"])) == texts(syn.expand("mobile phone"))


def test_language_sections_limit_the_rules():
    syn = Synonyms.shipped()
    assert syn.expand("tv", languages=["zh"]) == []
    assert texts(syn.expand("tv", languages=["en"])) == ["television"]
    assert "chocolate" in texts(syn.expand("朱古力", languages=["zh"]))  # `any` rules always apply


def test_reloads_when_the_file_changes_and_caches_otherwise(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text("[en]\nfridge, refrigerator\n")
    first = Synonyms.load(path)
    assert Synonyms.load(path) is first
    path.write_text("[en]\nfridge => icebox\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    second = Synonyms.load(path)
    assert second is not first and texts(second.expand("fridge")) == ["icebox"]


@pytest.mark.parametrize("body, message", [
    ('[zh]\nrules = ["糖, 糖果"]', "single character"),
    ('[en]\nrules = ["tv"]', "at least two different terms"),
    ('[en]\nrules = ["tv =>"]', "empty term"),
    ('weight = 2\n[en]\nrules = ["a1, b1"]', "weight: must be a number in (0, 1]"),
    ('[English]\nrules = ["a1, b1"]', "language code"),
    ('[en]\nrules = "a1, b1"', "expected a list"),
    ('[en\nrules', "not valid TOML"),
])
def test_bad_files_name_the_problem(tmp_path, body, message):
    path = tmp_path / "syn.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Synonyms.load(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Synonyms.load(tmp_path / "nope.toml")


def test_rule_and_file_limits_name_the_line(tmp_path):
    """A 3,001-term line is an error naming the line at once (it used to take 37 s and 780 MB), and so
    are an over-long term and a file over the size limit."""
    from souk.limits import MAX_SYNONYM_FILE_BYTES, MAX_SYNONYM_RULE_TERMS

    path = tmp_path / "syn.txt"
    path.write_text("[en]\nfridge, refrigerator\n" + ", ".join(f"w{i}" for i in range(3001)) + "\n")
    with pytest.raises(ConfigError, match=rf"syn.txt:3: a rule of 3001 terms .* limit of {MAX_SYNONYM_RULE_TERMS}"):
        Synonyms.load(path)
    path.write_text("[en]\n" + "a" * 300 + " => b\n")
    with pytest.raises(ConfigError, match="syn.txt:2: a term of 300 characters"):
        Synonyms.load(path)
    path.write_text("# " + "x" * MAX_SYNONYM_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match="over 4 MiB"):
        Synonyms.load(path)


def test_a_file_that_turns_invalid_keeps_the_last_good_version(tmp_path):
    """While serving, a broken edit is logged and skipped (searches keep the last good rules); the next
    good edit applies once re-read in the background; files outside the index directory are refused."""
    from souk.query.plan import QueryPlan
    from souk.query.synonyms import SynonymRewriter, _watched

    class Snapshot:
        path = tmp_path

    path = tmp_path / "syn.txt"
    path.write_text("[en]\nfridge, refrigerator\n")
    step = SynonymRewriter(Snapshot(), {"file": "syn.txt"})

    def expanded(text):
        return [e.text for e in step.rewrite(QueryPlan(original=text, text=text, normalized=text)).expansions]

    def edit(body, seconds):
        path.write_text(body)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))
        expanded("warm")  # notices the change, re-reads in the background
        _watched(path).wait(30)

    assert expanded("fridge") == ["refrigerator"]
    edit("SECRET=hunter2hunter2, \n", 2)
    assert expanded("fridge") == ["refrigerator"]
    edit("[en]\nfridge => icebox\n", 4)
    assert expanded("fridge") == ["icebox"]
    with pytest.raises(ConfigError, match="inside the index directory"):
        SynonymRewriter(Snapshot(), {"file": "/etc/hostname"})
    (tmp_path / "link.txt").symlink_to("/etc/hostname")
    with pytest.raises(ConfigError, match="inside the index directory"):
        SynonymRewriter(Snapshot(), {"file": "link.txt"})
