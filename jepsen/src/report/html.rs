//! `index.html`: one self-contained page per run. Every piece of text that came from the run
//! (anomaly messages, fault details, error strings, notes) goes through [`esc`], since a
//! checker quoting a stored value could otherwise inject markup into the page.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::plot::{self, Plots};
use super::{completed_ops, Completed, FaultWindow, ReportSummary, RunInfo};
use crate::checker::{CheckResult, Verdict};
use crate::history::{Call, History, OpType, NEMESIS};

/// Anomalies listed per checker; the rest are counted and left to `results.json`.
const MAX_ANOMALIES: usize = 50;
/// Nemesis records listed; a run with more is unusual enough that a count is enough.
const MAX_NEMESIS_EVENTS: usize = 2000;

/// Everything the page is made from.
pub(super) struct Page<'a> {
    pub info: &'a RunInfo,
    pub history: &'a History,
    pub results: &'a [CheckResult],
    pub summary: &'a ReportSummary,
    pub windows: &'a [FaultWindow],
}

pub(super) const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1140px;
       padding: 16px 20px 48px; color: #222; background: #fafafa; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
.verdict { display: inline-block; font-size: 30px; font-weight: 700; padding: 6px 20px; border-radius: 8px;
           color: #fff; letter-spacing: 0.04em; text-transform: uppercase; }
.valid { background: #2e9e44; } .invalid { background: #d62728; } .unknown { background: #e39400; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 4px; color: #fff; font-weight: 600; font-size: 13px; }
.head { display: flex; justify-content: space-between; align-items: flex-start; gap: 20px; }
.meta { border-collapse: collapse; font-size: 14px; } .meta td { padding: 2px 12px 2px 0; vertical-align: top; }
.meta td:first-child { color: #666; }
table.grid { border-collapse: collapse; width: 100%; font-size: 14px; background: #fff; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
table.grid th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.anomalies { margin: 0; padding-left: 18px; } ul.anomalies li { margin: 2px 0; }
code { font-size: 12.5px; background: #f0f0f0; padding: 0 3px; border-radius: 3px; }
.plot { background: #fff; border: 1px solid #ddd; } .plot svg { display: block; max-width: 100%; height: auto; }
.note { color: #666; font-size: 13px; margin: 4px 0; } .error { color: #d62728; }
";

pub(super) fn render(p: &Page) -> String {
    let (ops, unpaired) = completed_ops(p.history);
    let last_ns = p.history.ops.iter().map(|o| o.time_ns).max().unwrap_or(0);
    let plots = plot::render(&ops, p.windows, last_ns);
    let title = if p.info.title.is_empty() { "Berth Jepsen run" } else { &p.info.title };
    let mut out = String::with_capacity(64 * 1024 + ops.len() * 100);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — {}</title><style>{CSS}</style></head><body>\n",
        esc(title),
        verdict_word(p.summary.verdict)
    );
    header(&mut out, title, p);
    checkers(&mut out, p.results);
    operations(&mut out, &ops, unpaired);
    plot_sections(&mut out, &plots, unpaired);
    nemesis(&mut out, p);
    links(&mut out, p.info);
    out.push_str("</body></html>\n");
    out
}

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Invalid => "invalid",
        Verdict::Unknown => "unknown",
    }
}

pub(super) fn badge(v: Verdict) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", verdict_word(v))
}

fn secs(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e9)
}

fn header(out: &mut String, title: &str, p: &Page) {
    let i = p.info;
    let s = p.summary;
    let nemeses = if i.nemeses.is_empty() { "none".to_string() } else { i.nemeses.join(", ") };
    let converged = match s.convergence_ms {
        Some(ms) => format!("; converged {:.1} s after the final heal", ms as f64 / 1000.0),
        None if matches!(i.workload.as_str(), "deploy" | "statefulset") => "; did not converge".to_string(),
        None => String::new(),
    };
    let failovers = match s.agent_gap_max_ms {
        Some(ms) => format!("; {} agent failovers, longest gap {ms} ms", s.agent_failovers),
        None => String::new(),
    };
    let rows: [(&str, String); 9] = [
        ("database", i.db.clone()),
        ("nodes", i.nodes.to_string()),
        ("workload", i.workload.clone()),
        ("nemeses", nemeses),
        ("seed", i.seed.to_string()),
        ("time limit", format!("{} s", i.time_limit_s)),
        ("concurrency", i.concurrency.to_string()),
        ("rate", format!("{} ops/s", i.rate)),
        (
            "results",
            format!(
                "{} completions: {} ok, {} fail, {} info; {} faults; {} anomalies{converged}{failovers}",
                s.ops, s.ok, s.fail, s.info, s.faults, s.anomalies
            ),
        ),
    ];
    let _ = write!(out, "<div class=\"head\"><div><h1>{}</h1><table class=\"meta\">", esc(title));
    for (k, v) in rows {
        let _ = write!(out, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</table>");
    if !i.notes.is_empty() {
        out.push_str("<ul class=\"note\">");
        for n in &i.notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul>");
    }
    let v = verdict_word(s.verdict);
    let _ = writeln!(out, "</div><div class=\"verdict {v}\" id=\"verdict\">{v}</div></div>");
}

fn checkers(out: &mut String, results: &[CheckResult]) {
    out.push_str("<h2>Checkers</h2>");
    if results.is_empty() {
        out.push_str("<p class=\"note\">No checker ran, so nothing was shown to hold: the verdict is unknown.</p>");
        return;
    }
    out.push_str("<table class=\"grid\"><tr><th>checker</th><th>verdict</th><th>stats</th><th>anomalies</th></tr>");
    for r in results {
        let stats: Vec<String> = r.stats.iter().map(|(k, v)| format!("{}&nbsp;=&nbsp;{v}", esc(k))).collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(&r.checker),
            badge(r.verdict),
            stats.join("<br>")
        );
        anomalies(out, r);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table>\n");
}

fn anomalies(out: &mut String, r: &CheckResult) {
    if r.anomalies.is_empty() {
        out.push_str("none");
        return;
    }
    out.push_str("<ul class=\"anomalies\">");
    for a in r.anomalies.iter().take(MAX_ANOMALIES) {
        let _ = write!(out, "<li><code>{}</code> {}", esc(&a.kind), esc(&a.message));
        if !a.ops.is_empty() {
            let idx: Vec<String> = a.ops.iter().map(u64::to_string).collect();
            let _ = write!(out, " <span class=\"note\">[ops {}]</span>", idx.join(", "));
        }
        out.push_str("</li>");
    }
    let rest = r.anomalies.len().saturating_sub(MAX_ANOMALIES);
    if rest > 0 {
        let _ = write!(out, "<li class=\"note\">… and {rest} more (all are in results.json)</li>");
    }
    out.push_str("</ul>");
}

/// Per-function counts and latency percentiles of the paired operations.
fn operations(out: &mut String, ops: &[Completed], unpaired: u64) {
    #[derive(Default)]
    struct Row {
        ok: u64,
        fail: u64,
        info: u64,
        lat: Vec<u64>,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for o in ops {
        let r = rows.entry(o.f).or_default();
        match o.outcome {
            OpType::Ok => r.ok += 1,
            OpType::Fail => r.fail += 1,
            _ => r.info += 1,
        }
        r.lat.push(o.latency_ns());
    }
    out.push_str("<h2>Operations</h2>");
    if rows.is_empty() && unpaired == 0 {
        out.push_str("<p class=\"note\">No client operation completed.</p>");
        return;
    }
    out.push_str(
        "<table class=\"grid\"><tr><th>f</th><th>ok</th><th>fail</th><th>info</th>\
         <th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>",
    );
    for (f, mut r) in rows {
        r.lat.sort_unstable();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(f),
            r.ok,
            r.fail,
            r.info,
            ms(percentile(&r.lat, 0.50)),
            ms(percentile(&r.lat, 0.99)),
            ms(r.lat.last().copied().unwrap_or(0)),
        );
    }
    out.push_str("</table>\n");
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

fn plot_sections(out: &mut String, plots: &Plots, unpaired: u64) {
    out.push_str("<h2>Latency over time</h2>");
    out.push_str(
        "<p class=\"note\">Each completed client operation at its invocation time; colour is the outcome, \
         shape the operation. Shaded bands are fault windows (fault in place → healed).</p>",
    );
    if unpaired > 0 {
        let _ = write!(
            out,
            "<p class=\"note\">{unpaired} completions without an invocation of their own \
             (watch responses, watch ends, final histories) are not plotted.</p>"
        );
    }
    if let Some(note) = &plots.latency_note {
        let _ = write!(out, "<p class=\"note\" id=\"downsampled\">{}</p>", esc(note));
    }
    svg_block(out, &plots.latency_svg);
    out.push_str("<h2>Throughput over time</h2>");
    let _ = write!(
        out,
        "<p class=\"note\">Completions per second in {}-second buckets (by completion time), by outcome.</p>",
        plots.bucket_s
    );
    svg_block(out, &plots.throughput_svg);
}

pub(super) fn svg_block(out: &mut String, svg: &Result<String, String>) {
    match svg {
        Ok(svg) => {
            // Drop the XML declaration, if any: it is not allowed in the middle of an HTML page.
            let start = svg.find("<svg").unwrap_or(0);
            let _ = writeln!(out, "<div class=\"plot\">{}</div>", &svg[start..]);
        }
        Err(e) => {
            let _ = write!(out, "<p class=\"error\">The plot could not be drawn: {}</p>", esc(e));
        }
    }
}

fn nemesis(out: &mut String, p: &Page) {
    out.push_str("<h2>Nemesis</h2>");
    if !p.windows.is_empty() {
        out.push_str("<table class=\"grid\"><tr><th>fault</th><th>detail</th><th>in place (s)</th><th>healed (s)</th><th>duration (s)</th></tr>");
        for w in p.windows {
            let healed = if w.healed { secs(w.end_ns) } else { "never (until end)".to_string() };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&w.name),
                esc(&w.detail),
                secs(w.start_ns),
                healed,
                secs(w.end_ns - w.start_ns)
            );
        }
        out.push_str("</table><p></p>");
    }
    let events: Vec<_> = p.history.ops.iter().filter(|o| o.process == NEMESIS).collect();
    if events.is_empty() {
        out.push_str("<p class=\"note\">No nemesis events.</p>");
        return;
    }
    out.push_str("<table class=\"grid\"><tr><th>time (s)</th><th>event</th><th>type</th><th>name</th><th>detail</th><th>error</th></tr>");
    for o in events.iter().take(MAX_NEMESIS_EVENTS) {
        let (name, detail) = match &o.call {
            Call::Fault { name, detail } | Call::Heal { name, detail } => (name.as_str(), detail.as_str()),
            _ => ("", ""),
        };
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            secs(o.time_ns),
            o.call.name(),
            kind_word(o.kind),
            esc(name),
            esc(detail),
            esc(o.error.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>\n");
    let rest = events.len().saturating_sub(MAX_NEMESIS_EVENTS);
    if rest > 0 {
        let _ = write!(out, "<p class=\"note\">… and {rest} more nemesis records (see history.jsonl).</p>");
    }
}

fn kind_word(kind: OpType) -> &'static str {
    match kind {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

fn links(out: &mut String, info: &RunInfo) {
    out.push_str("<h2>Files</h2><ul>");
    out.push_str("<li><a href=\"history.jsonl\">history.jsonl</a> — every operation, one JSON object per line</li>");
    out.push_str("<li><a href=\"results.json\">results.json</a> — run info, checker results and counts</li>");
    for log in &info.logs {
        let _ = write!(out, "<li><a href=\"{0}\">{0}</a></li>", esc(log));
    }
    out.push_str("</ul>\n");
}
