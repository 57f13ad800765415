//! Placement by rendezvous hashing: for each plugin, the live hosts are ranked by a hash of
//! (plugin, host), and its instance `n` runs on the host ranked `n` (wrapping around when it
//! has more instances than there are hosts). Every host computes the same answer from the same
//! list, a host joining or leaving moves only the instances it gains or had, and a plugin's
//! instances are spread over distinct hosts while there are enough.

use sha2::{Digest, Sha256};

/// One instance of a plugin: its number among the plugin's instances, from 0.
pub type Slot = u32;

/// The host of each of `plugin`'s `instances` instances (index = slot), among `live` (host
/// names, in any order, without duplicates). Empty when no host is live.
pub fn hosts_for<'a>(plugin: &str, instances: u32, live: &[&'a str]) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &'a str)> = live
        .iter()
        .map(|host| (rank(plugin, host), *host))
        .collect();
    // Highest rank first; the name breaks (astronomically unlikely) ties the same way on
    // every host.
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    if ranked.is_empty() {
        return Vec::new();
    }
    (0..instances as usize)
        .map(|slot| ranked[slot % ranked.len()].1)
        .collect()
}

/// The rank of `host` for `plugin`: the first eight bytes of SHA-256 over both (with a
/// separator that neither name may hold).
fn rank(plugin: &str, host: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(plugin.as_bytes())
        .chain_update(b"\0")
        .chain_update(host.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_host_computes_the_same_placement_whatever_the_order() {
        let one = hosts_for("billing", 3, &["a", "b", "c", "d"]);
        let other = hosts_for("billing", 3, &["d", "c", "a", "b"]);
        assert_eq!(one, other);
    }

    #[test]
    fn instances_spread_over_distinct_hosts_while_there_are_enough() {
        for plugin in ["billing", "audit", "mailer", "x"] {
            let hosts = hosts_for(plugin, 3, &["a", "b", "c", "d"]);
            assert_eq!(hosts.iter().collect::<BTreeSet<_>>().len(), 3, "{plugin}");
            let crowded = hosts_for(plugin, 5, &["a", "b"]);
            assert_eq!(crowded.len(), 5);
            let on_a = crowded.iter().filter(|h| **h == "a").count();
            assert!(on_a == 2 || on_a == 3, "{plugin}: {crowded:?}");
        }
    }

    #[test]
    fn a_host_leaving_moves_only_its_own_instances() {
        let before = hosts_for("billing", 2, &["a", "b", "c", "d", "e"]);
        let gone = before[0];
        let live: Vec<&str> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .filter(|h| *h != gone)
            .collect();
        let after = hosts_for("billing", 2, &live);
        // The survivor keeps its instance; the lost one goes to a live host.
        assert_eq!(after[0], before[1]);
        assert_ne!(after[1], gone);
        assert!(!after.contains(&gone));
    }

    #[test]
    fn no_live_host_places_nothing() {
        assert!(hosts_for("billing", 2, &[]).is_empty());
    }
}
