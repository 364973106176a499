//! The one format of container log files on a node: the CRI's (and the kubelet's)
//! `{RFC 3339 time} {stdout|stderr} {F|P} {text}`, where `P` marks a partial line that the
//! next line continues (containerd splits long lines). The process runtime writes it, the
//! CRI runtime gets it from containerd, and the agent's log endpoint reads it.

use k8s_openapi::jiff::Timestamp;

/// One parsed line of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    /// The text continues on the next line (no newline after it).
    pub partial: bool,
    pub text: &'a str,
}

impl StoredLine<'_> {
    /// When the line was written, if its time parses.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.time.parse().ok()
    }
}

/// Parses a stored line (pure). Lines written before the tag existed (`{time} {stream}
/// {text}`, by agents before issue 18) read as full lines.
pub fn parse(line: &str) -> StoredLine<'_> {
    let mut parts = line.splitn(3, ' ');
    let time = parts.next().unwrap_or_default();
    let stream = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let (partial, text) = match rest.split_once(' ') {
        Some(("F", text)) => (false, text),
        Some(("P", text)) => (true, text),
        None if rest == "F" => (false, ""),
        None if rest == "P" => (true, ""),
        _ => (false, rest),
    };
    StoredLine { time, stream, partial, text }
}

/// A full line of `text` written to `stream` at `time`, newline included.
pub fn format(time: Timestamp, stream: &str, text: &str) -> String {
    format!("{time} {stream} F {text}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_parse_with_their_tag() {
        let l = parse("2016-10-06T00:17:09.669794202Z stdout F log content 1");
        assert_eq!(
            (l.time, l.stream, l.partial, l.text),
            ("2016-10-06T00:17:09.669794202Z", "stdout", false, "log content 1")
        );
        assert!(l.timestamp().is_some());
        let p = parse("2016-10-06T00:17:10.113242941Z stderr P part");
        assert!(p.partial);
        assert_eq!(p.text, "part");
        assert_eq!(parse("T stdout F").text, "");
        assert_eq!(parse("T stdout F ").text, "");
    }

    #[test]
    fn untagged_lines_are_full_lines() {
        let l = parse("2025-01-01T00:00:00.1Z stdout hello world");
        assert_eq!((l.partial, l.text), (false, "hello world"));
    }

    #[test]
    fn formatted_lines_parse_back() {
        let t: Timestamp = "2025-01-01T00:00:00.5Z".parse().unwrap();
        let s = format(t, "stderr", "a b");
        assert_eq!(s, "2025-01-01T00:00:00.5Z stderr F a b\n");
        let l = parse(s.trim_end());
        assert_eq!((l.stream, l.text, l.partial), ("stderr", "a b", false));
    }
}
