//! The report for people (a table) and for CI systems (JUnit XML).
use std::fmt::Write as _;

use super::timeline::WindowReport;
use super::verdict::Case;
use super::{Report, Step};

/// Milliseconds with the digits that matter; `-` for none.
pub(super) fn show(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(v) if v < 1.0 => format!("{v:.3}"),
        Some(v) if v < 100.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// Right-aligned columns, two spaces apart, under `head` (`_` for a
/// space): the rows' own cells, then their window's.
pub(super) fn table<'a>(head: &str, rows: impl Iterator<Item = (Vec<String>, &'a WindowReport)>) -> String {
    let head = format!("{head} requests failed p50_ms p90_ms p99_ms max_ms gap_ms");
    let mut rows: Vec<Vec<String>> = (rows.map(|(mut row, window)| {
        row.extend(window.cells());
        row
    }))
    .collect();
    rows.insert(0, head.split(' ').map(|h| h.replace('_', " ")).collect());
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:>w$}")).collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

impl Report {
    /// For people: the totals, one row per restart and one per upgrade,
    /// then PASSED or FAILED with the verdicts (the layout is in the
    /// `text_table` and `text_with_upgrades` tests).
    pub fn to_text(&self) -> String {
        let f = &self.failures;
        let l = &self.latency;
        let mut out = String::new();
        if let Some(why) = &self.startup_error {
            let _ = writeln!(out, "startup      FAILED: {why}");
        }
        let _ = writeln!(
            out,
            "requests     {} in {:.2} s ({}/s), {} failed, {} retried on a fresh connection ({}%, {} per connection and restart)",
            self.requests,
            self.duration_s,
            self.rate_per_s,
            f.total,
            self.retried,
            self.retried_percent,
            self.retried_per_connection_restart
        );
        if self.unsampled > 0 {
            let kept = self.requests - self.unsampled;
            let _ = writeln!(
                out,
                "detail       of the first {kept} requests and every failed one; {} more only counted (the sample cap)",
                self.unsampled
            );
        }
        if let Some(us) = self.load_cpu_us_per_request {
            let _ = writeln!(out, "load cost    {us} µs of the drill's CPU per request");
        }
        let _ = writeln!(
            out,
            "failures     refused {}, reset {}, timeout {}, bad status {}, short read {}, other {}",
            f.refused, f.reset, f.timeout, f.bad_status, f.short_read, f.other
        );
        let _ = writeln!(
            out,
            "latency ms   p50 {}  p90 {}  p99 {}  max {}",
            show(l.p50_ms),
            show(l.p90_ms),
            show(l.p99_ms),
            show(l.max_ms)
        );
        let (gap, floor) = (show(self.accept_gap.max_ms), show(self.accept_gap.outside_restarts_ms));
        let outside = if self.upgrades.count > 0 { "restarts and upgrades" } else { "restarts" };
        let _ = writeln!(out, "accept gap   largest {gap} ms, outside {outside} {floor} ms");
        let mib = |kib: Option<u64>| kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let (rss, private) = (mib(self.peak_rss_kib), mib(self.private_kib));
        let _ = writeln!(out, "supervisor   {}", self.supervisor);
        let _ = writeln!(out, "memory       peak RSS {rss}, private {private}");
        if let Some(idle) = &self.idle {
            let _ = writeln!(
                out,
                "at rest      {} ms CPU, {} wake-ups in {} s",
                idle.cpu_ms, idle.wakeups, idle.seconds
            );
        }
        let left = if self.leftovers.is_empty() { "nothing".into() } else { self.leftovers.join(", ") };
        let _ = writeln!(out, "left behind  {left}");
        if let Some(lines) = &self.request_lines {
            let (seen, answered, text) = (lines.seen, lines.answered, &lines.text);
            let _ = writeln!(out, "log lines    {seen} with {text:?} for {answered} answered requests");
        }
        out += &self.upgrades.text();
        if !self.restarts.is_empty() {
            let rows = self.restarts.iter().map(|r| {
                let row = vec![
                    r.number.to_string(),
                    r.generation.map_or("-".into(), |g| g.to_string()),
                    if r.ok { "ok" } else { "FAILED" }.into(),
                    show(r.ready_after_ms),
                    show(r.old_gone_after_ms),
                    show(Some(r.answered_after_ms)),
                ];
                (row, &r.window)
            });
            out.push('\n');
            out += &table("restart generation result ready_ms old_gone_ms took_ms", rows);
        }
        if self.upgrades.count > 0 {
            out.push('\n');
            out += &self.upgrades.table();
        }
        out.push('\n');
        if self.passed {
            out += "PASSED\n";
        } else {
            out += "FAILED\n";
            for v in &self.verdicts {
                let _ = writeln!(out, "  {v}");
            }
        }
        out
    }

    /// JUnit XML: one testsuite "handover drill"; `name` (the drill's
    /// command, say) is every testcase's classname. Testcases: startup, requests,
    /// restart N and upgrade N (one each), the log across upgrades (when
    /// checked), keep-alive retries, latency p99, nothing left behind; a
    /// failure's message is its first verdict, its text all of them.
    pub fn to_junit(&self, name: &str) -> String {
        let mut cases = vec![
            (Case::Startup, "startup".to_string(), 0.0),
            (Case::Requests, "requests".to_string(), self.duration_s),
        ];
        for r in &self.restarts {
            let step = Step::Restart(r.number);
            cases.push((Case::Step(step), step.to_string(), r.answered_after_ms / 1e3));
        }
        for u in &self.upgrades.each {
            let step = Step::Upgrade(u.number);
            cases.push((Case::Step(step), step.to_string(), u.round_trip_ms / 1e3));
        }
        if self.upgrades.count > 0 && self.upgrades.log_lines.is_some() {
            cases.push((Case::UpgradeLog, "log lines across upgrades".into(), 0.0));
        }
        if self.request_lines.is_some() {
            cases.push((Case::RequestLog, "a log line per request".into(), 0.0));
        }
        cases.push((Case::Retried, "keep-alive retries".into(), 0.0));
        cases.push((Case::Latency, "latency p99".into(), 0.0));
        cases.push((Case::Leftovers, "nothing left behind".into(), 0.0));
        let failed = cases.iter().filter(|c| self.findings.iter().any(|f| belongs(f.0, c.0))).count();
        let (n, time, class) = (cases.len(), self.duration_s, xml(name));
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"handover drill\" tests=\"{n}\" failures=\"{failed}\" time=\"{time:.3}\">"
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"handover drill\" tests=\"{n}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\">"
        );
        for (case, title, secs) in cases {
            let lines: Vec<&str> =
                self.findings.iter().filter(|f| belongs(f.0, case)).map(|f| f.1.as_str()).collect();
            let open =
                format!("    <testcase classname=\"{class}\" name=\"{}\" time=\"{secs:.3}\"", xml(&title));
            match lines.first() {
                None => out += &format!("{open}/>\n"),
                Some(first) => {
                    let _ = writeln!(out, "{open}>");
                    let _ = writeln!(
                        out,
                        "      <failure message=\"{}\" type=\"drill\">{}</failure>",
                        xml(first),
                        xml(&lines.join("\n"))
                    );
                    out += "    </testcase>\n";
                }
            }
        }
        let _ = writeln!(out, "    <system-out>{}</system-out>", xml(&self.to_text()));
        out += "  </testsuite>\n</testsuites>\n";
        out
    }
}

/// Whether a finding of case `finding` fails the testcase `case`.
fn belongs(finding: Case, case: Case) -> bool {
    match (finding, case) {
        (Case::RequestsIn(_), Case::Requests) => true,
        (Case::RequestsIn(n), Case::Step(m)) => n == m,
        _ => finding == case,
    }
}

/// Text for an XML attribute or element: markup escaped, characters XML
/// 1.0 forbids replaced by U+FFFD.
pub(super) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&apos;",
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::compute;
    use super::super::tests::{inputs, restart, sample, steady};
    use crate::drill::load::Outcome;

    #[test]
    fn text_table() {
        let base = Instant::now();
        let mut samples = steady(base, 0, 1000);
        samples[3].retried = true;
        let report = compute(&inputs(base, &samples, &[restart(base, 1, 200, 360)]));
        assert_eq!(
            report.to_text(),
            "requests     1000 in 1.00 s (1000/s), 0 failed, 1 retried on a fresh connection (0.1%, 1 per connection and restart)\n\
             load cost    42 µs of the drill's CPU per request\n\
             failures     refused 0, reset 0, timeout 0, bad status 0, short read 0, other 0\n\
             latency ms   p50 1.00  p90 1.00  p99 1.00  max 1.00\n\
             accept gap   largest 1.00 ms, outside restarts 1.00 ms\n\
             supervisor   handover\n\
             memory       peak RSS 3.5 MiB, private 0.2 MiB\n\
             at rest      0 ms CPU, 0 wake-ups in 5 s\n\
             left behind  nothing\n\
             \n\
             restart  generation  result  ready ms  old gone ms  took ms  requests  failed  p50 ms  p90 ms  p99 ms  max ms  gap ms\n      \
                   1           2      ok     35.25        120.0    160.0       762       0    1.00    1.00    1.00    1.00    1.00\n\
             \n\
             PASSED\n"
        );
    }

    /// A small checker: balanced tags, quoted attributes, `&` only in the
    /// five entities, no `<` in text.
    fn well_formed(doc: &str) -> Result<(), String> {
        let entities = |text: &str| {
            text.match_indices('&').all(|(i, _)| {
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| text[i..].starts_with(e))
            })
        };
        let mut rest =
            doc.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").ok_or("no declaration")?;
        let mut open = Vec::new();
        while let Some(lt) = rest.find('<') {
            let gt = lt + rest[lt..].find('>').ok_or("unclosed tag")?;
            let (text, tag) = (&rest[..lt], &rest[lt + 1..gt]);
            if !entities(text) || text.contains('>') {
                return Err(format!("bad text {text:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                (open.pop() == Some(name)).then_some(()).ok_or(format!("</{name}> closes nothing"))?;
            } else {
                let body = tag.strip_suffix('/').unwrap_or(tag);
                let (name, mut attrs) = body.split_once(' ').unwrap_or((body, ""));
                while !attrs.is_empty() {
                    let (_, after) = attrs.split_once("=\"").ok_or(format!("bad attribute in {tag:?}"))?;
                    let (value, after) = after.split_once('"').ok_or("unquoted")?;
                    if !entities(value) || value.contains('<') {
                        return Err(format!("bad attribute value {value:?}"));
                    }
                    attrs = after.trim_start();
                }
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = &rest[gt + 1..];
        }
        if open.is_empty() && rest.trim().is_empty() { Ok(()) } else { Err(format!("unclosed {open:?}")) }
    }

    #[test]
    fn junit_is_well_formed_and_escaped() {
        let base = Instant::now();
        let mut samples = steady(base, 0, 1000);
        samples.push(sample(base, 250, 1, Outcome::Reset));
        let mut restarts = vec![restart(base, 1, 200, 300), restart(base, 2, 600, 700)];
        restarts[1].ok = false;
        restarts[1].error = Some("generation 3 failed: <bind> & \"Address already in use\"\u{1}".into());
        let mut inputs = inputs(base, &samples, &restarts);
        inputs.leftovers = vec!["/tmp/x's <socket>".into()];
        let xml = compute(&inputs).to_junit("hello --port \"8080\" & <more>");
        well_formed(&xml).unwrap();
        assert!(xml.contains("tests=\"7\" failures=\"4\" time=\"1.000\""), "{xml}");
        assert!(xml.contains("name=\"keep-alive retries\" time=\"0.000\"/>"), "{xml}");
        assert!(xml.contains(
            "name=\"requests\" time=\"1.000\">\n      <failure message=\"1 request reset during restart 1"
        ));
        assert!(xml.contains(
            "<testcase classname=\"hello --port &quot;8080&quot; &amp; &lt;more&gt;\" name=\"requests\""
        ));
        assert!(xml.contains(
            "message=\"restart 2 failed: generation 3 failed: &lt;bind&gt; &amp; &quot;Address already in use&quot;\u{fffd}\""
        ));
        assert!(xml.contains(
            "name=\"restart 1\" time=\"0.100\">\n      <failure message=\"1 request reset during restart 1"
        ));
        assert!(xml.contains("<testcase classname=\"hello --port &quot;8080&quot; &amp; &lt;more&gt;\" name=\"latency p99\" time=\"0.000\"/>"));
        assert!(xml.contains("left behind: /tmp/x&apos;s &lt;socket&gt;"));
        assert!(well_formed("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a b=\"<\"/>").is_err());
        assert!(well_formed("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a>&</a>").is_err());
    }
}
