//! Image garbage collection as the kubelet's image manager does it: when the image
//! filesystem is fuller than the high threshold (`--image-gc-high-threshold`, 85 %), remove
//! images no container uses, least recently used first, until it is down to the low
//! threshold (`--image-gc-low-threshold`, 80 %); images seen for less than
//! `--minimum-image-ttl-duration` (2 min) and the sandbox image are kept. The choice is
//! pure ([`to_remove`]); the runtime measures and removes.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// When and how hard images are collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
    pub min_age: Duration,
    /// How often usage is checked (the kubelet's is 5 min).
    pub period: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> ImageGcPolicy {
        ImageGcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

impl ImageGcPolicy {
    /// The kubelet's checks: percentages within 0–100, low below high (high 100 turns
    /// collection off).
    pub fn check(&self) -> Result<(), String> {
        if self.high_percent > 100 || self.low_percent > 100 {
            return Err("image GC thresholds are percentages between 0 and 100".into());
        }
        if self.low_percent > self.high_percent {
            return Err(format!(
                "--image-gc-low-threshold ({}) must not be more than --image-gc-high-threshold ({})",
                self.low_percent, self.high_percent
            ));
        }
        Ok(())
    }
}

/// An image as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub size: u64,
    pub first_seen: Timestamp,
    pub last_used: Timestamp,
    /// A container (running or not) refers to it, or it is the sandbox image.
    pub keep: bool,
}

/// The images to remove (in order) for a filesystem of `capacity` bytes with `available`
/// free (pure).
pub fn to_remove(
    capacity: u64,
    available: u64,
    policy: &ImageGcPolicy,
    images: &[Candidate],
    now: Timestamp,
) -> Vec<String> {
    if capacity == 0 || policy.high_percent >= 100 {
        return Vec::new();
    }
    let used = capacity.saturating_sub(available);
    if used * 100 < policy.high_percent as u64 * capacity {
        return Vec::new();
    }
    let target = policy.low_percent as u64 * capacity / 100;
    let mut to_free = used.saturating_sub(target);
    let min_age = k8s_openapi::jiff::SignedDuration::try_from(policy.min_age).unwrap_or_default();
    let mut candidates: Vec<&Candidate> =
        images.iter().filter(|i| !i.keep && now.duration_since(i.first_seen) >= min_age).collect();
    candidates.sort_by_key(|i| i.last_used);
    let mut chosen = Vec::new();
    for c in candidates {
        if to_free == 0 {
            break;
        }
        chosen.push(c.id.clone());
        to_free = to_free.saturating_sub(c.size);
    }
    chosen
}

/// Whether two image references name the same image, Docker Hub's short forms included
/// (`berth/pause:1` = `docker.io/berth/pause:1`, `nginx` = `docker.io/library/nginx:latest`).
pub fn same_reference(a: &str, b: &str) -> bool {
    fn full(r: &str) -> String {
        let with_registry = match r.split_once('/') {
            Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => r.to_string(),
            Some(_) => format!("docker.io/{r}"),
            None => format!("docker.io/library/{r}"),
        };
        let name = with_registry.rsplit('/').next().unwrap_or_default();
        if name.contains(':') || name.contains('@') {
            with_registry
        } else {
            format!("{with_registry}:latest")
        }
    }
    full(a) == full(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64, age_s: i64, used_s_ago: i64, keep: bool, now: Timestamp) -> Candidate {
        Candidate {
            id: id.into(),
            size,
            first_seen: now - k8s_openapi::jiff::SignedDuration::from_secs(age_s),
            last_used: now - k8s_openapi::jiff::SignedDuration::from_secs(used_s_ago),
            keep,
        }
    }

    #[test]
    fn collection_starts_at_high_and_stops_at_low_oldest_use_first() {
        let now = Timestamp::now();
        let policy = ImageGcPolicy::default();
        let images = vec![
            image("recent", 5, 600, 10, false, now),
            image("old", 5, 600, 500, false, now),
            image("in-use", 50, 600, 900, true, now),
            image("new", 50, 30, 30, false, now),
            image("older", 3, 600, 400, false, now),
        ];
        // 84 % used: nothing to do.
        assert!(to_remove(100, 16, &policy, &images, now).is_empty());
        // 90 % used: free 10 bytes → "old" (5), then "older" (3), then "recent" (5).
        assert_eq!(to_remove(100, 10, &policy, &images, now), vec!["old", "older", "recent"]);
        // 86 %: 6 bytes → "old" and "older".
        assert_eq!(to_remove(100, 14, &policy, &images, now), vec!["old", "older"]);
        let off = ImageGcPolicy { high_percent: 100, ..policy };
        assert!(to_remove(100, 0, &off, &images, now).is_empty());
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(ImageGcPolicy::default().check().is_ok());
        let inverted = ImageGcPolicy { high_percent: 50, low_percent: 60, ..Default::default() };
        assert!(inverted.check().unwrap_err().contains("must not be more than"));
    }

    #[test]
    fn short_and_full_references_match() {
        assert!(same_reference("berth/pause:1", "docker.io/berth/pause:1"));
        assert!(same_reference("nginx", "docker.io/library/nginx:latest"));
        assert!(same_reference("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"));
        assert!(!same_reference("berth/pause:1", "berth/pause:2"));
    }
}
