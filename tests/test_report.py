"""`skewwatch report`: one self-contained HTML page with, per alerted feature, the distributions,
the statistic over time with its alerts, and the diagnosis; checked as text and rendered in Chromium."""
import doctest
import html
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import orjson
import pytest

from baselines.build import build_baseline_from_columns
from stream.commands.cli import main
from stream.devkit.synthetic import scenarios as streams
from stream.report import command, gather, svg
from tests.browser import HtmlStructure, chromium, decode_png, near
from tests.stream.helpers import poison_monitors

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N_EVENTS = 8_000
CHANGE_AT = 3_000
SHIFTED = "normal_00"
NEW_CATEGORY_FEATURE = "category_04"


def _scenario():
    """normal_00 shifts by 1 std and category_04 gets 20% of an unseen category, both at CHANGE_AT."""

    def change(prod, specs):
        prod.values[SHIFTED] = prod.values[SHIFTED].astype(np.float64)
        prod.values[SHIFTED][CHANGE_AT:] += 0.2
        hit = prod.rng.random(prod.n - CHANGE_AT) < 0.2
        prod.values[NEW_CATEGORY_FEATURE][CHANGE_AT:][hit] = streams.NEW_CATEGORY

    return streams.make_stream(N_EVENTS, change, change_at=CHANGE_AT, feature=SHIFTED)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The scenario's files, replay's alerts and the report page (built once for the module)."""
    d = tmp_path_factory.mktemp("report")
    s = _scenario()
    s.baseline().save(d / "b.msgpack")
    with open(d / "events.jsonl", "wb") as f:
        for e in s.events[:50]:  # single events, then lists of 500, as producers send them
            f.write(orjson.dumps(e) + b"\n")
        for i in range(50, len(s.events), 500):
            f.write(orjson.dumps(s.events[i:i + 500]) + b"\n")
    out = d / "report.html"
    assert main(["report", "--baseline", str(d / "b.msgpack"), str(d / "events.jsonl"), "-o", str(out)]) == 0
    replay_out = d / "alerts.jsonl"
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", "replay", str(d / "events.jsonl"),
                           "--baseline", str(d / "b.msgpack")], capture_output=True, check=True, cwd=_root())
    replay_out.write_bytes(proc.stdout)
    alerts = [json.loads(line) for line in proc.stdout.splitlines()]
    return {"dir": d, "stream": s, "page": out.read_text(encoding="utf-8"), "path": out, "alerts": alerts}


def _root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _card(page: str, feature: str) -> str:
    m = re.search(rf'<article class="card" id="f-{streams.MODEL}-{re.escape(feature)}".*?</article>', page, re.S)
    assert m, f"no card for {feature}"
    return m.group(0)


# ---- the page as text ---------------------------------------------------------------------------------
def test_the_page_is_one_self_contained_well_formed_html_file(run):
    page = run["page"]
    assert page.startswith("<!DOCTYPE html>")
    p = HtmlStructure()
    p.feed(page)
    p.close()
    assert p.errors == [] and p.stack == []
    assert [p.tags.count(t) for t in ("html", "head", "body", "style")] == [1, 1, 1, 1]
    assert page[: page.index("</head>")].count("<title>") == 1  # the other titles are the plots' own (SVG)
    # nothing fetched: no script, stylesheet link, image, font or CSS url(); links are in-page anchors only
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(p.tags)
    assert all(link.startswith("#") for link in p.links), p.links
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, re.I)
    assert "url(" not in page and "@import" not in page


def test_every_alert_replay_prints_is_on_the_page_with_its_diagnosis(run):
    page, alerts = run["page"], run["alerts"]
    assert {a["feature"] for a in alerts} >= {SHIFTED, NEW_CATEGORY_FEATURE}
    assert re.findall(r'data-alert-id="([0-9a-f]+)"', page) == [a["alert_id"] for a in alerts]
    for a in alerts:
        assert html.escape(a["diagnosis"]) in page
        assert f'<p class="next-step"><b>next step:</b> {html.escape(a["next_step"])}</p>' in page


def test_each_alerted_feature_shows_distributions_statistic_over_time_and_diagnosis(run):
    page, alerts = run["page"], run["alerts"]
    for feature in {a["feature"] for a in alerts if a["feature"]}:
        card = _card(page, feature)
        assert card.count("<svg") >= 2, feature  # the distributions, and at least one statistic over time
        assert f"{feature}: training vs production" in card
        assert "alert threshold" in card or "large shift" in card or "training mean" in card
        assert 'class="diagnosis"' in card
        for a in alerts:
            if a["feature"] == feature:
                assert html.escape(a["diagnosis"]) in card
    # the unseen category is named and drawn in the "new" colour, the shifted feature's card leads
    cat = _card(page, NEW_CATEGORY_FEATURE)
    assert f"{streams.NEW_CATEGORY} (new)" in cat and f'fill="{svg.NEW_COLOR}"' in cat
    assert "unseen in training" in cat
    first_card = re.search(r'<article class="card" id="f-[^"]+"', page).group(0)
    assert "quiet" not in first_card
    # features without an alert are collapsed, after the alerted ones
    assert page.index("<details>") > page.index(_card(page, SHIFTED))
    quiet = page[page.index("<details>"):]
    assert 'id="f-synthetic-normal_05"' in quiet


def test_the_header_names_model_events_and_alerts_by_kind(run):
    page, alerts = run["page"], run["alerts"]
    head = page[: page.index("<h2>Alerts</h2>")]
    assert streams.MODEL in head and f"{N_EVENTS:,}" in head
    for kind in {a["kind"] for a in alerts}:
        n = sum(a["kind"] == kind for a in alerts)
        assert f'{n} {kind.replace("_", " ")}</span>' in head
    assert "UTC" in head  # the events carry timestamps: the time span is shown


def test_no_event_request_id_or_single_value_is_reproduced(run):
    page, events = run["page"], run["stream"].events
    assert not re.search(r"\br-\d+\b", page)
    raw = {repr(e["features"][SHIFTED]) for e in events[:2000] if e["features"][SHIFTED] is not None}
    raw |= {repr(e["confidence"]) for e in events[:2000]}
    assert not [v for v in raw if v in page]


def test_statistics_are_sampled_on_window_edges_and_values_bounded(run):
    traces = gather.gather([run["stream"].baseline()], [str(run["dir"] / "events.jsonl")], window=1000)
    (t,) = traces
    assert t.sample_x == list(range(1000, N_EVENTS + 1, 1000))
    f = t.features[SHIFTED]
    assert len(f.series("psi")) == len(t.sample_x)
    psi = f.series("psi")
    assert max(psi[:3]) < 0.1 < min(psi[4:])  # the shift at 3000 shows from the 4th window on
    assert f.alert_at is not None and CHANGE_AT < f.alert_at < CHANGE_AT + 1000
    assert f.overall.valid == N_EVENTS - f.overall.missing - f.overall.invalid
    assert f.since_alert.valid + f.since_alert.missing == N_EVENTS - f.alert_at
    # the sample since the alert is the shifted distribution (+0.2 on N(0.5, 0.2))
    assert abs(float(np.mean(f.since_alert.sample.values)) - 0.7) < 0.03


def test_reservoir_is_bounded_and_uniform():
    r = gather._Reservoir(1_000, np.random.default_rng(3))
    for start in range(0, 100_000, 7_000):
        r.add(np.arange(start, min(start + 7_000, 100_000), dtype=float))
    assert r.seen == 100_000 and len(r.values) == 1_000 and len(set(r.values.tolist())) == 1_000
    # a uniform sample of 0..99999: each decile holds ~100 (binomial sd ~9.5)
    counts = np.histogram(r.values, bins=10, range=(0, 100_000))[0]
    assert counts.min() > 60 and counts.max() < 140


def test_a_scale_change_is_drawn_on_a_log_axis_so_both_distributions_show():
    rng = np.random.default_rng(0)
    b = build_baseline_from_columns("m", {"latency_ms": rng.lognormal(4, 0.5, 5_000)})
    values = gather.Values(True, rng)
    x = rng.lognormal(4, 0.5, 2_000) / 1000  # seconds instead of milliseconds
    values.add_numbers(x, np.zeros(len(x), bool), np.zeros(len(x), bool))
    drawn = svg.numeric_distribution_svg(b.features["latency_ms"], values, "production", 5_000)
    assert "latency_ms (log scale)" in drawn
    same = gather.Values(True, rng)
    same.add_numbers(x * 1000, np.zeros(len(x), bool), np.zeros(len(x), bool))
    assert "log scale" not in svg.numeric_distribution_svg(b.features["latency_ms"], same, "production", 5_000)


def test_json_numbers_are_shown_as_the_baselines_float_codes(tmp_path):
    """A baseline whose codes were written as floats ("2.0", a CSV's): the events' numbers 2, 2.0 and
    "2" are those categories, as the monitors see them, not an unseen `2 (new)`."""
    rng = np.random.default_rng(0)
    b = build_baseline_from_columns("m", {"grade": rng.choice(["1.0", "2.0"], 5_000).tolist()})
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"model": "m", "features": {"grade": v}}) + b"\n"
                              for v in ([1, 2, 2.0, "1"][k] for k in rng.integers(0, 4, 2_000))))
    (t,) = gather.gather([b], [str(path)], window=500)
    assert not t.alerts
    values = t.features["grade"].overall
    assert {label for label, _, _ in values.categories.top()} == {"1.0", "2.0"} and values.valid == 2_000


def test_json_booleans_are_shown_as_the_baselines_spelling_of_them(tmp_path):
    """A baseline built from a CSV True/False column: JSON true/false events are its categories, as
    the monitors see them (detectors.extract.BOOL_SPELLINGS), not an unseen `true (new)`."""
    rng = np.random.default_rng(0)
    b = build_baseline_from_columns("m", {"is_new": rng.choice(["True", "False"], 5_000).tolist()})
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"model": "m", "features": {"is_new": bool(v)}}) + b"\n"
                              for v in rng.random(2_000) < 0.5))
    (t,) = gather.gather([b], [str(path)], window=500)
    assert not t.alerts
    values = t.features["is_new"].overall
    assert {label for label, _, _ in values.categories.top()} == {"True", "False"} and values.valid == 2_000
    drawn = svg.categorical_distribution_svg(b.features["is_new"], values, "production", 5_000)
    assert "(new)" not in drawn and "unseen in training" not in drawn


def test_a_point_mass_alert_charts_the_chains_statistic_against_its_threshold(tmp_path):
    """A value stuck from event 1,000: the first alert is the point-mass chain's. The report charted
    nothing but PSI for it (the snapshot had no point-mass statistic); now the chain's CUSUM is drawn
    with its own threshold (the alert's)."""
    rng = np.random.default_rng(0)
    b = build_baseline_from_columns("m", {"amount": rng.gamma(3.0, 40.0, 20_000)})
    x = rng.gamma(3.0, 40.0, 4_000)
    x[1_000:] = float(np.quantile(x, 0.31))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"model": "m", "features": {"amount": float(v)}}) + b"\n" for v in x))
    (t,) = gather.gather([b], [str(path)], window=500)
    alerts = [a for a in t.alerts if a["feature"] == "amount"]
    assert alerts[0]["detector"] == "point_mass", [a["detector"] for a in alerts]
    (chart, *_) = svg.feature_charts(t.features["amount"], alerts, t)
    assert chart.alert_detector == "point_mass" and chart.threshold == alerts[0]["threshold"]
    (label, series), = chart.lines
    assert None not in series and max(series) > 0  # sampled on window edges: the climb, not the crossing


def test_wrong_arguments_exit_2(tmp_path, run, capsys):
    assert main(["report", "--baseline", str(run["dir"] / "b.msgpack"), str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["report", "--baseline", str(run["dir"] / "events.jsonl"), str(run["dir"] / "events.jsonl")]) == 2
    assert main(["report", "--window", "0", "--baseline", str(run["dir"] / "b.msgpack"),
                 str(run["dir"] / "events.jsonl")]) == 2


# ---- the page rendered by a real browser ------------------------------------------------------------
def test_decode_png_reads_what_it_is_given():
    rows = [bytes([f]) + bytes(range(f * 10, f * 10 + 6)) for f in range(5)]  # 2x5 RGB, every filter type
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 5, 8, 2, 0, 0, 0))
           + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b""))
    img = decode_png(png)
    assert img.shape == (5, 2, 3)
    assert img[0].ravel().tolist() == [0, 1, 2, 3, 4, 5]
    assert img[1].ravel().tolist() == [10, 11, 12, 10 + 13, 11 + 14, 12 + 15]  # Sub
    assert img[2].ravel().tolist() == [20 + 10, 21 + 11, 22 + 12, 23 + 23, 24 + 25, 25 + 27]  # Up
    up, rec = img[2].ravel().tolist(), []
    for i, v in enumerate(range(30, 36)):  # Average
        rec.append((v + (((rec[i - 3] if i >= 3 else 0) + up[i]) >> 1)) & 255)
    assert img[3].ravel().tolist() == rec


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.integration
def test_chromium_renders_the_plots(run, tmp_path):
    url = run["path"].resolve().as_uri()
    dom = chromium(tmp_path, "--dump-dom", url).stdout.decode("utf-8", "replace")
    n_svg = run["page"].count("<svg")
    assert n_svg >= 1 + 2 * len({a["feature"] for a in run["alerts"] if a["feature"]})
    assert dom.count("<svg") == n_svg  # every plot was parsed into the rendered document
    assert dom.count("<polyline") == run["page"].count("<polyline") > 0
    png = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,3000", url)
    img = decode_png(png.read_bytes())
    assert img.shape == (3000, 1200, 3)
    assert img.std() > 20  # not a blank page
    # the plots are drawn: training (blue), production (orange) and the unseen category / alerts (red)
    assert near(img, svg.PROD_COLOR) > 2_000
    assert near(img, "#A9BCD4") + near(img, svg.BASE_COLOR) > 2_000  # blue at 35% over white, or solid
    assert near(img, svg.NEW_COLOR) > 300


def test_an_event_a_monitor_raises_on_is_left_out_of_the_report_too(run, tmp_path, monkeypatch):
    """The report takes replay's processing: the event is dead-lettered as monitor_error, the
    rest gives replay's alerts, and only the events the monitor took are recorded."""

    events = [dict(e, request_id="poison") if i == 4321 else e for i, e in enumerate(run["stream"].events)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    poison_monitors(monkeypatch)
    recorder = gather.Recorder([run["stream"].baseline()], window=1000)
    recorder.run_file(str(path), "auto")
    recorder.finish()
    (t,) = recorder.traces
    assert dict(recorder.replay.rejected) == {"monitor_error": 1}
    assert t.events == N_EVENTS - 1 == recorder.router.monitor(streams.MODEL).events_seen
    assert [a["alert_id"] for a in t.alerts] == [a["alert_id"] for a in run["alerts"]]


# ---- the operator's day (issue 18): rejected events are prominent, never an all-clear ---------------
def _banner(page: str) -> str:
    m = re.search(r'<div class="banner[^"]*">.*?</div>', page, re.S)
    return m.group(0) if m else ""


def test_a_report_of_events_no_baseline_was_loaded_for_says_so_first_and_exits_1(run, tmp_path, capsys):
    events = [dict(e, model="fraud") for e in run["stream"].events[:600]]
    path = tmp_path / "fraud.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = tmp_path / "r.html"
    assert main(["report", "--baseline", str(run["dir"] / "b.msgpack"), str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no event was monitored" in err and "'fraud' (600)" in err
    page = out.read_text(encoding="utf-8")
    banner = _banner(page)
    assert banner and page.index(banner) < page.index('<div class="tiles">')
    assert "Nothing was monitored" in banner and "unknown_model 600" in banner
    assert "&#x27;fraud&#x27; (600)" in banner and f"&#x27;{streams.MODEL}&#x27;" in banner
    assert "production looks like training" not in page
    assert "no event monitored" in page and "events carry no timestamps" not in page


def test_a_report_with_rejected_events_shows_them_by_reason_and_no_all_clear(run, tmp_path, capsys):
    quiet = run["stream"].events[:CHANGE_AT]  # before the change: no alert
    lines = [orjson.dumps(e) for e in quiet] + [b"{oops"] * 3 + [orjson.dumps(dict(quiet[0], model="fraud"))]
    path = tmp_path / "quiet.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "r.html"
    assert main(["report", "--baseline", str(run["dir"] / "b.msgpack"), str(path), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    banner = _banner(page)
    assert "4 rejected" in banner and "not_decodable 3" in banner and "unknown_model 1" in banner
    assert "&#x27;fraud&#x27; (1)" in banner
    assert "production looks like training" not in page
    # without rejects the all-clear stands, and there is no banner
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join(orjson.dumps(e) for e in quiet) + b"\n")
    assert main(["report", "--baseline", str(run["dir"] / "b.msgpack"), str(clean), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "production looks like training" in page and not _banner(page)


@pytest.mark.parametrize("output", ["missing/dir/r.html", "."])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_2_before_the_replay(run, tmp_path, output):
    proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", "report", str(run["dir"] / "events.jsonl"),
                           "--baseline", str(run["dir"] / "b.msgpack"), "-o", str(tmp_path / output)],
                          capture_output=True, text=True, cwd=_root())
    assert proc.returncode == 2
    assert proc.stderr.startswith("skewwatch report: error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "replay:" not in proc.stderr  # checked before the replay, not after it


@pytest.mark.parametrize("module", [command, gather, svg], ids=lambda m: m.__name__)
def test_doctests(module):
    # stream/ is not in pytest's doctest paths (stream.worker.app builds a Faust app on import)
    assert doctest.testmod(module).failed == 0
