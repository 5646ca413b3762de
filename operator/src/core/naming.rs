//! Deterministic names and hashes for children.

use sha2::{Digest, Sha256};

/// First `len` hex characters of the SHA-256 of `data`.
pub fn short_hash(data: &[u8], len: usize) -> String {
    let digest = hex::encode(Sha256::digest(data));
    digest[..len.min(digest.len())].to_owned()
}

/// Name of the pod that runs `owner` (of kind prefix `isvc`, `safety`, `sim`) on `node`:
/// `<prefix>-<owner>-<hash(node)>`. Owner names are limited by the CRD's CEL rules so this stays
/// within 63 characters; the node name enters only through a 10-character hash.
pub fn pod_name(prefix: &str, owner: &str, node: &str) -> String {
    format!("{prefix}-{owner}-{}", short_hash(node.as_bytes(), 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_deterministic_and_differ_per_node() {
        let a = pod_name("isvc", "detector", "robot-000");
        assert_eq!(a, pod_name("isvc", "detector", "robot-000"));
        assert_ne!(a, pod_name("isvc", "detector", "robot-001"));
        assert!(a.starts_with("isvc-detector-"));
        assert_eq!(a.len(), "isvc-detector-".len() + 10);
    }

    #[test]
    fn long_node_names_do_not_lengthen_pod_names() {
        let node = "n".repeat(253);
        assert_eq!(pod_name("isvc", "x", &node).len(), "isvc-x-".len() + 10);
    }
}
