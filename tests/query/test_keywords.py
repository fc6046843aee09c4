import pytest

from souk.errors import QueryError
from souk.query.keywords import reduce


def test_long_english_query_keeps_the_product_and_says_what_went():
    r = reduce("hello, can you please help me find a good stainless steel french door refrigerator "
               "with ice maker under 2000 dollars")
    assert r.reduced and r.terms > 12
    assert r.kept == ["stainless", "steel", "french", "door", "refrigerator", "ice", "maker"]
    assert r.reduced_text == "stainless steel french door refrigerator ice maker"
    assert {"hello", "please", "good", "dollars", "2000"} <= set(r.dropped)


def test_negated_words_are_not_searched_for():
    r = reduce("i want a large stainless steel kitchen sink without a drainboard for my new house please thanks")
    assert "sink" in r.kept and "drainboard" in r.dropped and "drainboard" not in r.reduced_text


def test_long_chinese_query_keeps_nouns_and_the_head_noun():
    r = reduce("想给家里老人买一个屏幕大一点声音大的智能手机，最好待机时间长一点，价格不要太贵")
    assert r.reduced and "智能手机" in r.kept and "屏幕" in r.kept
    assert {"想", "买", "一个", "价格", "太贵"} <= set(r.dropped)
    assert r.reduced_text.split() == r.kept and len(r.kept) <= 8


def test_chinese_negation_stays_with_its_word():
    r = reduce("请问有没有适合三岁小朋友吃的不含糖的朱古力饼干推荐一下谢谢")
    assert r.kept[-2:] == ["朱古力", "饼干"] and "不含糖" in r.kept and "含糖" not in r.kept
    assert "请问" in r.dropped and "谢谢" in r.dropped


def test_short_queries_are_left_alone_and_limits_are_configurable():
    r = reduce("Chocolate milk 1L")
    assert not r.reduced and r.reduced_text == "Chocolate milk 1L" and r.dropped == []
    long = "red cotton shirt for men with long sleeves and a button down collar for the office"
    assert not reduce(long, longer_than=20).reduced
    short = reduce(long, max_terms=2, longer_than=5)
    assert short.reduced and short.kept == ["cotton", "shirt"]
    with pytest.raises(QueryError):
        reduce(long, max_terms=0)


def test_keywords_step_rewrites_long_queries_only():
    from souk.errors import ConfigError
    from souk.query.plan import Planner

    planner = Planner(None, ["syntax", "keywords"], {"keywords": {"max_terms": 3, "longer_than": 6}})
    plan = planner.plan("please help me find a good waterproof hiking jacket for my wife")
    assert plan.text == "waterproof hiking jacket" and plan.notes[0].startswith("keywords: searched")
    assert planner.plan("waterproof hiking jacket").text == "waterproof hiking jacket"
    quoted = 'please help me find a good "waterproof" hiking jacket for my wife'
    assert planner.plan(quoted).text == quoted
    with pytest.raises(ConfigError, match="query.keywords.max_terms"):
        Planner(None, ["keywords"], {"keywords": {"max_terms": 0}})
