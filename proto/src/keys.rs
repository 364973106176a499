//! Key-range helpers with etcd's conventions, shared by servers and clients.
//!
//! A range is `[key, range_end)`; an empty `range_end` means the single key `key`;
//! `range_end == [0]` means "every key ≥ key"; `key == [0]` and `range_end == [0]` means
//! every key.

/// The smallest key greater than every key starting with `prefix`, i.e. the `range_end`
/// that turns `prefix` into a prefix range. An all-`0xff` (or empty) prefix yields `[0]`,
/// etcd's "to the end of the keyspace".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A resolved key range: `start` inclusive, `end` exclusive (`None` = unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Resolves an etcd `(key, range_end)` pair.
    pub fn from_etcd(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            let mut end = key.to_vec();
            end.push(0);
            return KeyRange { start: key.to_vec(), end: Some(end) };
        }
        if range_end == [0] {
            return KeyRange { start: key.to_vec(), end: None };
        }
        KeyRange { start: key.to_vec(), end: Some(range_end.to_vec()) }
    }

    /// True when the range holds exactly one key.
    pub fn is_single_key(&self) -> bool {
        matches!(&self.end, Some(end) if end.len() == self.start.len() + 1
            && end.starts_with(&self.start) && end.last() == Some(&0))
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// True when no key can be in the range (`end <= start`).
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, Some(end) if end.as_slice() <= self.start.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"aa"), b"ab");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn ranges_resolve_like_etcd() {
        let single = KeyRange::from_etcd(b"foo", b"");
        assert!(single.is_single_key());
        assert!(single.contains(b"foo"));
        assert!(!single.contains(b"foo\0"));
        assert!(!single.contains(b"fo"));

        let from = KeyRange::from_etcd(b"b", b"\0");
        assert!(from.contains(b"zzz"));
        assert!(!from.contains(b"a"));

        let all = KeyRange::from_etcd(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"\xff"));

        let prefix = KeyRange::from_etcd(b"/a/", &prefix_end(b"/a/"));
        assert!(prefix.contains(b"/a/x"));
        assert!(!prefix.contains(b"/b"));
        assert!(KeyRange::from_etcd(b"b", b"a").is_empty());
    }
}
