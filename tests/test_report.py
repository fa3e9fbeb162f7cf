"""The HTML report: self-contained, every figure a decodable PNG; loads in a real headless browser."""

import base64
import shutil
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from quadlens.cli import app


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def bundled_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_is_self_contained_with_every_figure(bundled_report):
    page = bundled_report.read_text()
    parser = Images()
    parser.feed(page)
    assert len(parser.sources) == 6  # 4 explanation figures and 2 bound figures
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "This model is a <b>pizza</b>" in page and "second harmonic" in page
    from quadlens import load_model

    assert f"· seed 0 · weights SHA-256 {load_model().fingerprint()[:12]}…" in page  # which model the page is about
    assert "http://" not in page and "https://" not in page


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no chromium on this machine (apt-get install chromium)")
def test_report_renders_in_headless_chromium(bundled_report):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(bundled_report.as_uri())
        sizes = page.eval_on_selector_all("img", "images => images.map(i => [i.complete, i.naturalWidth])")
        browser.close()
    assert errors == []
    assert len(sizes) == 6 and all(done and width > 100 for done, width in sizes)


@pytest.mark.parametrize("fraction, decimals, text", [
    (0.945, 1, "94.5 %"), (1.0, 1, "100.0 %"), (0.0, 1, "0.0 %"), (0.5, 2, "50.00 %"),
    (1 - 162 / 911**2, 1, "99.98 %"),  # 162 uncertified inputs of 829 921 must not read as 100 %
    (1 / 911**2, 1, "0.0001 %"), (1 - 1e-9, 1, "> 99.9999 %"), (1e-9, 1, "< 0.0001 %"),
])
def test_percent_never_rounds_a_shortfall_away(fraction, decimals, text):
    from quadlens.text import percent

    assert percent(fraction, decimals) == text


@pytest.mark.parametrize("value, text", [
    (0.9809, "0.9809"), (0.99996, "0.99996"), (1.0, "1"), (12.99999, "12.99999"), (1.4e7, "1.4e+07"),
    (0.5 - 1e-12, "0.5"), (1 - 1e-12, "1"), (float("nan"), "nan"), (float("inf"), "inf"), (-0.99996, "-0.99996"),
])
def test_figures_do_not_round_a_value_short_of_whole_to_whole(value, text):
    from quadlens.text import figure

    assert figure(value) == text


@pytest.mark.parametrize("seconds, text", [(0.2, "0 s"), (40.4, "40 s"), (59.4, "59 s"), (59.6, "1 min"),
                                           (7 * 60 + 20, "7 min"), (3599, "1 h 00 min"), (2 * 3600 + 5 * 60, "2 h 05 min"),
                                           (-1, "0 s")])
def test_durations_read_as_a_person_waiting_needs_them(seconds, text):
    from quadlens.text import duration

    assert duration(seconds) == text


def test_report_without_brute_force_says_what_its_certified_shares_mean(tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--no-brute-force", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    parser = Images()
    parser.feed(page)
    assert len(parser.sources) == 6  # the bounds' figure without the truth's panel
    assert "brute force was not run" in page and "proven lower bound on the accuracy" in page
    assert "below the brute-force error" not in page
    assert "<td>-</td><td>-</td><td>-</td></tr>" in page  # a tier's tightness and violations: unknown


def test_the_plain_words_count_bounds_below_the_truth():
    """The sentence on soundness is measured: a bound forced below the true error on one input is reported."""
    import dataclasses

    import quadlens
    from quadlens.certify import bound
    from quadlens.report import _checked

    report = bound(quadlens.load_model(), device="cpu", tiers=["arcs"])
    assert _checked(report) == "no bound was below the brute-force error on any input"
    tier = report.tiers[0]
    broken = tier.bound.copy()
    broken[3, 5] = report.truth[3, 5] / 2
    report.tiers[0] = dataclasses.replace(tier, bound=broken)
    assert "below the brute-force error on 1 input (arcs)" in _checked(report)


def test_a_notebook_shows_the_explanation_and_bounds_as_the_reports_tables(bundled, bundled_explanation):
    """Jupyter displays ``_repr_html_``: the same tables as the report, cell for cell, without figures."""
    from quadlens.certify import bound
    from quadlens.report import model_report
    from quadlens.text import percent

    report = bound(bundled, device="cpu", tiers=["arcs"])
    page = model_report("bundled", bundled_explanation, report, bundled_explanation.model_config)
    shown = bundled_explanation._repr_html_()
    tables = shown.split("<div class=scroll>")[1:]
    assert len(tables) == 3 and all(table in page for table in tables)  # criteria, clusters, ladder
    assert '<span class="badge pizza">pizza</span>' in shown and "<img" not in shown
    bounds = report._repr_html_()
    assert bounds.count("<tr>") == 3 and "<td class=left>arcs</td>" in bounds  # header, arcs, brute force
    assert bounds.split("<div class=scroll>")[1] in page and "no bound was below the brute-force error" in bounds
    certified = report.tiers[0].certified.mean()  # short of 1 here: a share of inputs reads as a percentage
    assert certified < 1 and f"<td>{percent(certified)}</td>" in bounds
