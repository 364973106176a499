//! The campaign's `index.html` in the store directory: one row per cell (verdict, counts,
//! for control-plane cells the convergence time, anomaly kinds, a link to the run's own
//! page), then each run's latency and throughput plots with its fault windows shaded, so a
//! whole campaign can be read on one page. Plots are rebuilt from each run's stored history.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::html::{badge, esc, svg_block, CSS};
use super::{completed_ops, fault_windows, plot, ReportSummary};
use crate::history::History;

/// One cell of a campaign as the index shows it.
#[derive(Debug, Clone)]
pub struct CampaignEntry {
    /// `berth deploy kill-leader,partition-agent`.
    pub title: String,
    /// The run's directory, if the run got far enough to have one.
    pub dir: Option<PathBuf>,
    pub summary: Option<ReportSummary>,
    /// Why the run itself failed.
    pub error: Option<String>,
    pub anomaly_kinds: Vec<String>,
    /// Control-plane cells show their convergence time (or that they did not converge).
    pub control_plane: bool,
}

/// Writes `<store>/index.html` for the campaign's entries.
pub fn write_campaign_index(store: &Path, entries: &[CampaignEntry]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(store)?;
    let path = store.join("index.html");
    std::fs::write(&path, render(store, entries))?;
    Ok(path)
}

fn convergence(e: &CampaignEntry) -> String {
    match (e.control_plane, e.summary.and_then(|s| s.convergence_ms)) {
        (_, Some(ms)) => format!("{:.1} s", ms as f64 / 1000.0),
        (true, None) if e.summary.is_some() => "did not converge".into(),
        _ => "-".into(),
    }
}

fn agent_gaps(e: &CampaignEntry) -> String {
    match e.summary {
        Some(s) if e.control_plane => match s.agent_gap_max_ms {
            Some(ms) => format!("{} ({ms} ms)", s.agent_failovers),
            None => "0".into(),
        },
        _ => "-".into(),
    }
}

pub(super) fn render(store: &Path, entries: &[CampaignEntry]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Berth Jepsen campaign</title>\
         <style>{CSS}</style></head><body><h1>Campaign: {} runs</h1>\
         <table class=\"grid\"><tr><th>cell</th><th>verdict</th><th>ops</th><th>faults</th>\
         <th>converged after heal</th><th>agent failovers (longest gap)</th><th>anomalies</th></tr>",
        entries.len()
    );
    for e in entries {
        let link = e.dir.as_ref().and_then(|d| d.strip_prefix(store).ok()).map(|d| d.join("index.html"));
        let title = match &link {
            Some(l) => format!("<a href=\"{}\">{}</a>", esc(&l.display().to_string()), esc(&e.title)),
            None => esc(&e.title),
        };
        let verdict = match (&e.summary, &e.error) {
            (Some(s), _) => badge(s.verdict),
            (None, Some(err)) => format!("<span class=\"error\">run failed: {}</span>", esc(err)),
            (None, None) => "not run".into(),
        };
        let (ops, faults) = e.summary.map_or((0, 0), |s| (s.ops, s.faults));
        let anomalies = if e.anomaly_kinds.is_empty() { "-".to_string() } else { e.anomaly_kinds.join(", ") };
        let _ = write!(
            out,
            "<tr><td>{title}</td><td>{verdict}</td><td class=\"num\">{ops}</td><td class=\"num\">{faults}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&convergence(e)),
            esc(&agent_gaps(e)),
            esc(&anomalies)
        );
    }
    out.push_str("</table>");
    for e in entries {
        let Some(dir) = &e.dir else { continue };
        let Ok(history) = History::load(&dir.join("history.jsonl")) else { continue };
        let (ops, _) = completed_ops(&history);
        let windows = fault_windows(&history);
        let last_ns = history.ops.iter().map(|o| o.time_ns).max().unwrap_or(0);
        let plots = plot::render(&ops, &windows, last_ns);
        let verdict = e.summary.map(|s| badge(s.verdict)).unwrap_or_default();
        let _ = write!(out, "<h2>{} {verdict}</h2>", esc(&e.title));
        svg_block(&mut out, &plots.latency_svg);
        svg_block(&mut out, &plots.throughput_svg);
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn summary(verdict: Verdict, convergence_ms: Option<u64>) -> ReportSummary {
        ReportSummary {
            verdict,
            ops: 10,
            ok: 9,
            fail: 1,
            info: 0,
            faults: 2,
            anomalies: 0,
            convergence_ms,
            agent_failovers: 3,
            agent_gap_max_ms: Some(812),
        }
    }

    #[test]
    fn the_index_lists_every_cell_with_its_verdict_and_convergence() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |title: &str, summary, error: Option<&str>, control_plane| CampaignEntry {
            title: title.into(),
            dir: Some(dir.path().join(title.replace(' ', "-"))),
            summary,
            error: error.map(String::from),
            anomaly_kinds: vec![],
            control_plane,
        };
        let entries = vec![
            entry("berth set kill", Some(summary(Verdict::Valid, None)), None, false),
            entry("berth deploy kill-leader", Some(summary(Verdict::Valid, Some(1629))), None, true),
            entry("berth deploy partition", Some(summary(Verdict::Invalid, None)), None, true),
            entry("berth bind <pause>", None, Some("cluster did not start"), true),
        ];
        let path = write_campaign_index(dir.path(), &entries).unwrap();
        let page = std::fs::read_to_string(path).unwrap();
        assert!(page.contains("Campaign: 4 runs"), "{page}");
        assert!(page.contains("href=\"berth-deploy-kill-leader/index.html\""), "{page}");
        assert!(page.contains("<td class=\"num\">1.6 s</td>"), "{page}");
        assert!(page.contains("did not converge"), "{page}");
        assert!(page.contains("<td class=\"num\">3 (812 ms)</td>"), "agent gaps of control-plane cells: {page}");
        assert!(page.contains("run failed: cluster did not start") && page.contains("berth bind &lt;pause&gt;"));
    }
}
