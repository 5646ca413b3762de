//! Wave membership: a threshold on a stable hash of (revision, robot), and the names a
//! `robots: N` wave recorded when it started.

use robofleet_crds::inference_service::PinnedWave;
use sha2::{Digest, Sha256};

use super::plan::{WavePlan, WaveSize};

/// The robot's position for `revision`: the first 8 bytes of SHA-256 of `<revision>/<node>`,
/// big-endian. Stable across operator versions and restarts, different for each revision (so
/// each rollout canaries other robots), uniform over the fleet.
pub fn robot_hash(revision: &str, node: &str) -> u64 {
    let digest = Sha256::digest(format!("{revision}/{node}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Whether `hash / 2^64 < percent / 100`, in exact integer arithmetic.
pub fn below_percent(hash: u64, percent: u32) -> bool {
    u128::from(hash) * 100 < u128::from(percent.min(100)) << 64
}

/// Which wave each robot of one rollout belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Membership<'a> {
    /// The rollout's waves.
    pub waves: &'a [WavePlan],
    /// Names recorded by its `robots` waves.
    pub pins: &'a [PinnedWave],
    /// The revision rolled out.
    pub revision: &'a str,
}

impl Membership<'_> {
    /// The robots `robots` wave `k` recorded, if it has started.
    pub fn pinned(&self, k: usize) -> Option<&[String]> {
        self.pins
            .iter()
            .find(|p| p.wave as usize == k)
            .map(|p| p.robots.as_slice())
    }

    /// The 0-based wave of `robot`: the first wave that recorded its name or whose cumulative
    /// percent its hash falls below. A `robots` wave that has not started holds nobody yet.
    pub fn wave_of(&self, robot: &str) -> usize {
        let hash = robot_hash(self.revision, robot);
        for (k, wave) in self.waves.iter().enumerate() {
            let member = match wave.size {
                WaveSize::Robots(_) => self
                    .pinned(k)
                    .is_some_and(|names| names.iter().any(|n| n == robot)),
                WaveSize::Percent(p) => below_percent(hash, p),
            };
            if member {
                return k;
            }
        }
        self.waves.len().saturating_sub(1)
    }
}

/// The `n` robots of `candidates` with the smallest hashes for `revision`, by name.
pub fn smallest<'r>(
    revision: &str,
    candidates: impl IntoIterator<Item = &'r str>,
    n: usize,
) -> Vec<String> {
    let mut ranked: Vec<(u64, &str)> = candidates
        .into_iter()
        .map(|r| (robot_hash(revision, r), r))
        .collect();
    ranked.sort_unstable();
    ranked.dedup();
    ranked
        .into_iter()
        .take(n)
        .map(|(_, r)| r.to_owned())
        .collect()
}
