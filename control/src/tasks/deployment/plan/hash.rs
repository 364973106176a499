//! The pod-template hash (Kubernetes' `ComputeHash`) that names a template's ReplicaSet,
//! and template equality up to that hash.

use super::*;

/// Kubernetes' `SafeEncodeString` alphabet: no vowels (no words), no confusable characters.
pub(super) const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes' `ComputeHash`: FNV-32a of the template, then of the collision count as four
/// little-endian bytes, printed in decimal and mapped through the safe alphabet. (Go hashes
/// a `spew` dump of the struct; we hash its canonical JSON, so the values differ from
/// Kubernetes' but are just as stable.)
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv32a::default();
    hasher.write(&serde_json::to_vec(template).expect("a template serializes"));
    if let Some(c) = collision_count {
        hasher.write(&(c as u32).to_le_bytes());
    }
    let decimal = (hasher.finish() as u32).to_string();
    decimal.bytes().map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char).collect()
}

/// FNV-1a, 32 bits.
struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Fnv32a(0x811c_9dc5)
    }
}

impl Hasher for Fnv32a {
    fn finish(&self) -> u64 {
        self.0.into()
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// Kubernetes' `EqualIgnoreHash`: templates equal up to the `pod-template-hash` label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> PodTemplateSpec {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut() {
            if let Some(labels) = meta.labels.as_mut() {
                labels.remove(POD_TEMPLATE_HASH);
                if labels.is_empty() {
                    meta.labels = None;
                }
            }
        }
        t
    }
    strip(a) == strip(b)
}
