import base64
import re
from pathlib import Path

import pytest

from souk.evaluation.datasets import Dataset
from souk.evaluation.report import write_report
from souk.evaluation.runner import evaluate
from souk.evaluation.runs import read_run
from support import CHROMIUM, CHROMIUM_ARGS, browser_or_skip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tiny: Dataset, fixtures: Path, bm25, tmp_path_factory) -> Path:
    queries = {**tiny.queries, "q2": "sharpen a <b>knife</b> & hone"}  # must come out escaped
    dataset = Dataset(queries, tiny.qrels, tiny.skipped, tiny.name, tiny.split)
    evaluation = evaluate(bm25(fixtures / "tiny"), dataset, k=10, progress=False)
    return write_report(evaluation, tmp_path_factory.mktemp("report"), read_run(fixtures / "run_a.trec"))


def test_report_writes_plots_and_self_contained_html(report: Path):
    assert report.name == "index.html"
    page = report.read_text()
    for name in ("metrics.png", "latency.png", "baseline_diff.png"):
        assert (report.parent / name).read_bytes().startswith(PNG_MAGIC)
        assert f"href='{name}'" in page
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) == 3 and all(base64.b64decode(e).startswith(PNG_MAGIC) for e in embedded)
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    assert "sharpen a &lt;b&gt;knife&lt;/b&gt; &amp; hone" in page and "<b>knife" not in page
    assert "Against the baseline" in page and "Worst 20 queries by ndcg@10" in page


def test_report_opens_in_chromium_with_its_plots(report: Path, tmp_path: Path):
    sync_api = browser_or_skip()
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(report.as_uri())
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(widths) == 3 and all(w > 0 for w in widths)
    image = shot.read_bytes()
    assert image.startswith(PNG_MAGIC) and len(image) > 50_000


def test_the_public_training_plots_write_pngs(tmp_path: Path):
    from souk.evaluation.report import plot_bars, plot_curve

    series = {"dev": ([0, 1, 2], [0.2, 0.4, 0.3]), "train": (range(3), [0.3, 0.5, 0.6])}
    plot_curve(tmp_path / "curve.png", series, "toy", "epoch", kept=1, kept_label="kept epoch 1",
               lines={"recall alone": 0.35}, loss=([1, 2], [0.9, 0.7]), notes=[(1, 0.4, "judged")])
    plot_bars(tmp_path / "bars.png", {"bm25": 3.0, "cover": 1.0}, "gains", "gain")
    for name in ("curve.png", "bars.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
