//! The picture of a run (`--report DIR`): one self-contained HTML page,
//! inline CSS and SVG, nothing fetched. On top the verdict (PASSED, or
//! FAILED with every reason) and the totals; below, on one time axis,
//! requests per second and latency (p50, p99, max) per bucket, each
//! restart and upgrade as a band from its request to its answer (the old
//! generation gone), accept gaps as grey bars and every failed request as
//! a red tick.
use std::fmt::Write as _;

use super::render::xml;
use super::{Report, Series};

/// The plot area: left and right margins, width, and each chart's height.
const LEFT: f64 = 64.0;
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 190.0;
/// The charts' tops: requests per second, then latency.
const RATE_TOP: f64 = 30.0;
const LATENCY_TOP: f64 = 270.0;
const SVG_HEIGHT: f64 = 500.0;

/// About `count` ticks from 0 up to `max`, a round step apart.
fn ticks(max: f64, count: f64) -> impl Iterator<Item = f64> {
    let raw = (max / count).max(1e-9);
    let unit = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * unit).find(|&s| s >= raw).unwrap_or(10.0 * unit);
    std::iter::successors(Some(0.0), move |v| Some(v + step)).take_while(move |&v| v <= max + 1e-9)
}

/// `12`, `0.5`, `2.25`: short numbers for axis labels.
fn short(v: f64) -> String {
    let text = format!("{:.2}", v);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A chart's frame, its y ticks from 0 to `max` and its title.
fn frame(out: &mut String, top: f64, max: f64, title: &str, unit: &str) {
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#999"/><text x="{LEFT}" y="{}" class="t">{}</text>"##,
        top - 8.0,
        xml(title)
    );
    for v in ticks(max, 4.0) {
        let y = top + HEIGHT - HEIGHT * v / max;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" class="y">{}{unit}</text>"##,
            LEFT + WIDTH,
            LEFT - 4.0,
            y + 4.0,
            short(v)
        );
    }
}

/// A polyline of `points` (x, value) in a chart at `top` scaled to `max`.
fn line(out: &mut String, top: f64, max: f64, points: &[(f64, f64)], color: &str, width: f64) {
    if points.is_empty() {
        return;
    }
    let coords: Vec<String> = (points.iter())
        .map(|&(x, v)| format!("{x:.1},{:.1}", top + HEIGHT - HEIGHT * (v / max).min(1.0)))
        .collect();
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" points="{}"/>"#,
        coords.join(" ")
    );
}

fn svg(series: &Series) -> String {
    // Where `ms` is on the x axis.
    let x = |ms: f64| LEFT + WIDTH * (ms / series.end_ms.max(1.0)).clamp(0.0, 1.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{SVG_HEIGHT}" viewBox="0 0 {} {SVG_HEIGHT}">"#,
        LEFT + WIDTH + 20.0,
        LEFT + WIDTH + 20.0
    );
    let half = series.bucket_ms / 2.0;
    let rate: Vec<(f64, f64)> = series.buckets.iter().map(|b| (x(b.from_ms + half), b.rate_per_s)).collect();
    let rate_max = rate.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let pick = |f: fn(&super::series::Bucket) -> Option<f64>| -> Vec<(f64, f64)> {
        series.buckets.iter().filter_map(|b| Some((x(b.from_ms + half), f(b)?))).collect()
    };
    let (p50, p99, max) = (pick(|b| b.p50_ms), pick(|b| b.p99_ms), pick(|b| b.max_ms));
    let latency_max = p99.iter().map(|p| p.1).fold(0.001, f64::max) * 1.5;
    frame(&mut out, RATE_TOP, rate_max, "requests per second (by when each started)", "");
    frame(&mut out, LATENCY_TOP, latency_max, "latency of the requests that succeeded: p50, p99, max", " ms");
    for band in &series.bands {
        let (a, b) = (x(band.from_ms), x(band.to_ms).max(x(band.from_ms) + 1.5));
        let fill = if band.ok { "rgba(40,110,230,0.16)" } else { "rgba(220,30,30,0.25)" };
        for top in [RATE_TOP, LATENCY_TOP] {
            let _ = write!(
                out,
                r#"<rect x="{a:.1}" y="{top}" width="{:.1}" height="{HEIGHT}" fill="{fill}"/>"#,
                b - a
            );
        }
        let _ =
            write!(out, r#"<text x="{a:.1}" y="{}" class="b">{}</text>"#, RATE_TOP + 12.0, xml(&band.label));
    }
    for gap in &series.gaps {
        let (a, b) = (x(gap.from_ms), x(gap.to_ms));
        let _ = write!(
            out,
            r##"<rect x="{a:.1}" y="{RATE_TOP}" width="{:.1}" height="{HEIGHT}" fill="#888" fill-opacity="0.35"><title>accept gap {} ms</title></rect>"##,
            (b - a).max(1.0),
            short(gap.to_ms - gap.from_ms)
        );
    }
    line(&mut out, RATE_TOP, rate_max, &rate, "#1a7f37", 1.5);
    line(&mut out, LATENCY_TOP, latency_max, &max, "#bbb", 1.0);
    line(&mut out, LATENCY_TOP, latency_max, &p99, "#d4661c", 1.5);
    line(&mut out, LATENCY_TOP, latency_max, &p50, "#2860c8", 1.5);
    for failed in &series.failed {
        let x = x(failed.at_ms);
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="red" stroke-width="1.5"><title>{} at {} ms</title></line>"#,
            RATE_TOP + HEIGHT - 14.0,
            RATE_TOP + HEIGHT,
            failed.kind,
            failed.at_ms
        );
    }
    if let Some(until) = series.detail_until_ms {
        let x = x(until);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{RATE_TOP}" y2="{}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" class="b">detail ends (sample cap)</text>"##,
            LATENCY_TOP + HEIGHT,
            x + 3.0,
            LATENCY_TOP + 12.0
        );
    }
    let seconds = series.end_ms / 1000.0;
    for s in ticks(seconds, 10.0) {
        let x = x(s * 1000.0);
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" class="x">{} s</text>"#,
            LATENCY_TOP + HEIGHT + 16.0,
            short(s)
        );
    }
    out += "</svg>";
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{font-size:20px;margin:0 0 6px}.pass{color:#1a7f37}.fail{color:#c62828}ul{margin:4px 0 10px}\
.k span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:12px;height:12px;\
vertical-align:-1px;margin-right:4px}svg text{font:11px system-ui,sans-serif;fill:#444}svg .t{font-size:12px;\
fill:#222}svg .y{text-anchor:end}svg .x{text-anchor:middle}svg .b{fill:#1d4f9c}";

impl Report {
    /// The page for `--report DIR` (the report needs its series).
    pub fn to_html(&self, title: &str) -> String {
        let mut out = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
            xml(title)
        );
        let (class, word) = if self.passed { ("pass", "PASSED") } else { ("fail", "FAILED") };
        let _ = writeln!(out, "<h1 class=\"{class}\">handover drill: {word}</h1>");
        if !self.verdicts.is_empty() {
            out += "<ul>";
            for v in &self.verdicts {
                let _ = write!(out, "<li>{}</li>", xml(v));
            }
            out += "</ul>\n";
        }
        let ok = self.restarts.iter().filter(|r| r.ok).count();
        let _ = writeln!(
            out,
            "<p>{} requests in {:.2} s ({}/s), {} failed, {} retried; {ok} of {} restarts ok, {} upgrades; \
             latency p50 {} ms, p99 {} ms; largest accept gap {} ms. {}</p>",
            self.requests,
            self.duration_s,
            self.rate_per_s,
            self.failures.total,
            self.retried,
            self.restarts_asked,
            self.upgrades.count,
            super::render::show(self.latency.p50_ms),
            super::render::show(self.latency.p99_ms),
            super::render::show(self.accept_gap.max_ms),
            xml(&self.supervisor)
        );
        out += "<p class=\"k\"><span><i class=\"sw\" style=\"background:rgba(40,110,230,.3)\"></i>restart or \
                upgrade (request to old generation gone)</span><span><i class=\"sw\" style=\"background:#bbb\"></i>\
                accept gap</span><span><i class=\"sw\" style=\"background:red\"></i>failed request</span><span>\
                <i class=\"sw\" style=\"background:#2860c8\"></i>p50</span><span><i class=\"sw\" \
                style=\"background:#d4661c\"></i>p99</span></p>\n";
        match &self.series {
            Some(series) => {
                out += &svg(series);
                if series.failed_not_shown > 0 {
                    let _ =
                        write!(out, "<p>{} more failed requests not marked.</p>", series.failed_not_shown);
                }
            }
            None => out += "<p>No run to draw.</p>",
        }
        let _ = write!(out, "\n<pre>{}</pre>\n</body></html>\n", xml(&self.to_text()));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::compute;
    use super::super::tests::{inputs, restart, sample, steady};
    use super::*;
    use crate::drill::load::Outcome;

    #[test]
    fn the_page_is_self_contained_and_draws_the_run() {
        let base = Instant::now();
        let mut samples = steady(base, 0, 1000);
        samples.push(sample(base, 420, 3, Outcome::Reset));
        let restarts = [restart(base, 1, 400, 460)];
        let mut inputs = inputs(base, &samples, &restarts);
        inputs.series = true;
        let page = compute(&inputs).to_html("drill <of> hello");
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        assert!(page.contains("<title>drill &lt;of&gt; hello</title>"));
        assert!(page.contains(
            "<h1 class=\"fail\">handover drill: FAILED</h1>\n<ul><li>1 request reset during restart 1"
        ));
        assert!(!page.contains("http://") || page.matches("http://").count() == 1, "only the SVG namespace");
        assert!(!page.contains("https://") && !page.contains("<script") && !page.contains(" src="));
        assert_eq!(page.matches("<polyline").count(), 4, "rate, max, p99, p50");
        assert!(page.contains("<title>reset at 420 ms</title>"));
        assert!(page.contains(">restart 1</text>"));
        assert_eq!(ticks(7.3, 4.0).collect::<Vec<_>>(), [0.0, 2.0, 4.0, 6.0]);
        assert_eq!(short(2.50), "2.5");
    }
}
