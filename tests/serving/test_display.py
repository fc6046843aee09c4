"""Values shown with the schema's unit: a CNY catalog never shows "$", a field without unit a plain number."""
from souk.schema import Schema
from souk.serving.display import display_config, format_value, price_field


def schema(**price):
    return Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"},
                                                    "weight": {"kind": "number", "unit": "g"},
                                                    "price": {"kind": "number", **price},
                                                    "cat": {"kind": "keyword", "hierarchy": "|"}}})


def test_money_keeps_its_currency_and_other_numbers_stay_plain():
    assert format_value(1299, "¥") == "¥1,299.00" and format_value(630, "元") == "630.00元"
    assert format_value(1299.5, "HK$") == "HK$1,299.50" and format_value(1299.5, "EUR") == "1,299.50 EUR"
    assert format_value(630, None) == "630" and format_value(12.5, None) == "12.5" and format_value(500, "g") == "500 g"


def test_the_page_config_names_units_price_and_hierarchies():
    cfg = display_config(schema(unit="¥"))
    assert cfg["price_field"] == "price" and cfg["units"] == {"weight": "g", "price": "¥"}
    assert cfg["currency_fields"] == ["price"] and cfg["hierarchies"] == {"cat": ">"}
    assert display_config(schema())["currency_fields"] == [] and price_field(schema()) == "price"


def test_cli_search_prints_the_schemas_currency(tmp_path):
    from support import run_main

    catalog = tmp_path / "shop.csv"
    catalog.write_text("sku,title,price\nJ1,兰蔻 面霜 cream,\"¥1,299\"\nJ2,雅诗兰黛 面霜,¥630\n", encoding="utf-8")
    run_main("index", str(catalog), "--index", str(tmp_path / "ix"))
    out = run_main("search", "面霜", "--index", str(tmp_path / "ix"), "--sort", "price").stdout
    assert "¥1,299.00" in out and "¥630.00" in out and "$" not in out
