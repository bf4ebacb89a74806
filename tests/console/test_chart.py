"""The detections chart: buckets filled (gaps included), bars stacked by grade, labels escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tracker_watch.console import chart

ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_buckets_fill_gaps_and_ignore_rows_outside() -> None:
    rows = [(ORIGIN, "verified", 2), (ORIGIN, "listed", 3), (ORIGIN + 2 * HOUR, "advertised", 1),
            (ORIGIN + 10 * HOUR, "verified", 9)]
    data = chart.buckets(rows, ORIGIN, HOUR, 3)
    assert [b.total for b in data] == [5, 0, 1]
    assert data[0].counts == {"verified": 2, "listed": 3}


def test_svg_has_a_bar_per_grade_and_escapes_its_title() -> None:
    data = chart.buckets([(ORIGIN, "verified", 2), (ORIGIN, "corrupt", 1)], ORIGIN, HOUR, 4)
    svg = str(chart.render(data, HOUR, "<script>x</script>"))
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert svg.count('class="g-verified"') == 1
    assert svg.count('class="g-corrupt"') == 1
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_bucket_size_hours_then_days() -> None:
    now = ORIGIN + timedelta(days=10)
    assert chart.bucket_size(None, now) == HOUR
    assert chart.bucket_size(now - timedelta(hours=5), now) == HOUR
    assert chart.bucket_size(ORIGIN, now) == timedelta(days=1)


def test_axis_labels_are_distinct_whole_numbers() -> None:
    for peak, labels in ((1, ["0", "1"]), (2, ["0", "1", "2"]), (7, ["0", "5", "10"])):
        svg = str(chart.render(chart.buckets([(ORIGIN, "verified", peak)], ORIGIN, HOUR, 2), HOUR, "t"))
        found = [part.split(">", 1)[1].split("<", 1)[0] for part in svg.split('text-anchor="end"')[1:]]
        assert sorted(found, key=int) == labels, (peak, found)
