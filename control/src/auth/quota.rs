//! Per-plugin quotas that the auth service enforces itself.
//!
//! nats-server does not apply the limits of a user JWT issued through an auth callout
//! (nats-server issue #5002: it drops the callout's JWT before it applies a user's limits), and
//! it has no per-user connection or rate limit at all. So the auth service checks its plugins'
//! connections through the system account every [`DEFAULT_QUOTA_INTERVAL`]
//! (`$SYS.REQ.SERVER.PING.CONNZ` reports each connection's subscriptions, bytes received from
//! it and start) and disconnects (`KICK`) those over a quota of their plugin's `[limits]`:
//!
//! - `max_subscriptions`: a connection holding more is disconnected;
//! - `max_connections`: the callout refuses a login beyond it, counting from the last check
//!   (plus the logins it admitted since); the newest connections beyond it are disconnected;
//! - `max_bytes_per_second`: a plugin whose connections together sent more, measured between
//!   checks, has them all disconnected.
//!
//! A plugin disconnected for a quota is refused new logins for a cool-down
//! ([`DEFAULT_QUOTA_COOLDOWN`]), so that it cannot reconnect and repeat at once. This module
//! holds the bookkeeping and the judgement; [`super::sweep`] lists and disconnects.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use switchyard_schemas::{Limits, PluginId};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::callout::Refusal;

/// How often plugin connections are checked against their quotas by default: a plugin may
/// exceed a quota for up to this long (plus the time the check takes) before it is
/// disconnected.
pub const DEFAULT_QUOTA_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest quota interval: a check lists every plugin connection, and a rate measured
/// over a shorter window says more about bursts than about rates. A shorter
/// [`AuthConfig::quota_interval`](super::AuthConfig::quota_interval) is taken as this.
pub const MIN_QUOTA_INTERVAL: Duration = Duration::from_millis(100);

/// How long a plugin disconnected for exceeding a quota is refused new logins by default:
/// long enough that a worker reconnecting at once does not resume a flood within the second,
/// short enough that a plugin that misjudged its limits comes back by itself.
pub const DEFAULT_QUOTA_COOLDOWN: Duration = Duration::from_secs(10);

/// Which quota a plugin exceeded, its limit and what was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    /// One connection held more subscriptions than `max_subscriptions`.
    #[error("{observed} subscriptions on one connection, over its max_subscriptions of {limit}")]
    Subscriptions {
        /// The plugin's `max_subscriptions`.
        limit: u32,
        /// The connection's subscriptions.
        observed: u32,
    },
    /// The plugin had (or a login would have given it) more connections than
    /// `max_connections`.
    #[error("{observed} connections, over its max_connections of {limit}")]
    Connections {
        /// The plugin's `max_connections`.
        limit: u32,
        /// Its connections, the refused or disconnected ones included.
        observed: usize,
    },
    /// The plugin's connections together sent more bytes per second than
    /// `max_bytes_per_second`.
    #[error("{observed} bytes per second sent, over its max_bytes_per_second of {limit}")]
    BytesPerSecond {
        /// The plugin's `max_bytes_per_second`.
        limit: u32,
        /// The bytes per second measured.
        observed: u64,
    },
}

impl QuotaExceeded {
    /// The `[limits]` key exceeded.
    pub fn quota(&self) -> &'static str {
        match self {
            Self::Subscriptions { .. } => "max_subscriptions",
            Self::Connections { .. } => "max_connections",
            Self::BytesPerSecond { .. } => "max_bytes_per_second",
        }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        match *self {
            Self::Subscriptions { limit, .. }
            | Self::Connections { limit, .. }
            | Self::BytesPerSecond { limit, .. } => u64::from(limit),
        }
    }

    /// What was observed.
    pub fn observed(&self) -> u64 {
        match *self {
            Self::Subscriptions { observed, .. } => u64::from(observed),
            Self::Connections { observed, .. } => observed as u64,
            Self::BytesPerSecond { observed, .. } => observed,
        }
    }
}

/// What the callout needs to know of the enforcer's view: how many connections each plugin
/// has, and which plugins are cooling down. Shared between the two.
#[derive(Debug)]
pub(crate) struct QuotaBook {
    cooldown: Duration,
    state: Mutex<BookState>,
}

#[derive(Debug, Default)]
struct BookState {
    /// Each plugin's connections at the last check, plus the logins admitted since. `None`
    /// until a check has run (no system connection, or not yet): the callout then cannot
    /// count, and leaves `max_connections` to the checks.
    open: Option<HashMap<PluginId, usize>>,
    /// The logins admitted since the last check's listing was asked for, and when: a listing
    /// takes a while (it waits for more servers' answers), and the logins admitted meanwhile
    /// may be missing from it.
    admitted: Vec<(Instant, PluginId)>,
    /// Plugins refused new logins until a moment, and why.
    cooling: HashMap<PluginId, Cooling>,
}

#[derive(Debug, Clone, Copy)]
struct Cooling {
    until: Instant,
    exceeded: QuotaExceeded,
}

impl QuotaBook {
    /// An empty book; a plugin disconnected for a quota cools down for `cooldown`.
    pub(crate) fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            state: Mutex::new(BookState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BookState> {
        // The state stays consistent whatever panicked while holding it: every update is a
        // single insert or replacement.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits one more connection of `plugin`, counting it, or says why not: it is cooling
    /// down, or it already has `max_connections` as far as the last check (and the logins
    /// since) tell.
    ///
    /// # Errors
    /// [`Refusal::CoolingDown`] or [`Refusal::OverQuota`].
    pub(crate) fn admit(&self, plugin: &PluginId, limits: &Limits) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        if let Some(cooling) = state.cooling.get(plugin).copied() {
            if cooling.until > now {
                let left = cooling.until - now;
                return Err(Refusal::CoolingDown {
                    plugin: plugin.clone(),
                    exceeded: cooling.exceeded,
                    left_secs: left.as_secs() + u64::from(left.subsec_nanos() > 0),
                });
            }
            state.cooling.remove(plugin);
        }
        if let Some(open) = state.open.as_mut() {
            let count = open.entry(plugin.clone()).or_default();
            let limit = limits.max_connections.get();
            if *count >= limit as usize {
                return Err(Refusal::OverQuota {
                    plugin: plugin.clone(),
                    exceeded: QuotaExceeded::Connections {
                        limit,
                        observed: *count + 1,
                    },
                });
            }
            *count += 1;
            state.admitted.push((now, plugin.clone()));
        }
        Ok(())
    }

    /// Refuses `plugin` new logins for the cool-down from now.
    pub(crate) fn cool_down(&self, plugin: &PluginId, exceeded: QuotaExceeded) {
        let until = Instant::now() + self.cooldown;
        self.state()
            .cooling
            .insert(plugin.clone(), Cooling { until, exceeded });
    }

    /// Replaces the connection counts with those of a check whose listing was asked for at
    /// `listed`, plus the logins admitted since then, and forgets cool-downs that ended.
    pub(crate) fn counted(&self, mut open: HashMap<PluginId, usize>, listed: Instant) {
        let now = Instant::now();
        let mut state = self.state();
        state.admitted.retain(|(at, _)| *at >= listed);
        for (_, plugin) in &state.admitted {
            *open.entry(plugin.clone()).or_default() += 1;
        }
        state.open = Some(open);
        state.cooling.retain(|_, cooling| cooling.until > now);
    }
}

/// One plugin connection as a check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginConnection {
    /// The server it is on.
    pub(crate) server: String,
    /// Its id on that server.
    pub(crate) cid: u64,
    pub(crate) plugin: PluginId,
    /// The fingerprint of the rights it was issued.
    pub(crate) fingerprint: String,
    /// How many subscriptions it holds.
    pub(crate) subscriptions: u32,
    /// How many message bytes (headers and payloads) the server has received from it.
    pub(crate) in_bytes: u64,
    /// When the server accepted it, by the server's clock.
    pub(crate) start: OffsetDateTime,
}

/// Every plugin connection at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    /// When it was asked for.
    pub(crate) asked: Instant,
    /// When it was taken (when the servers' answers arrived).
    pub(crate) at: Instant,
    /// Each server's clock when it answered.
    pub(crate) servers: HashMap<String, OffsetDateTime>,
    pub(crate) connections: Vec<PluginConnection>,
}

/// Measures the bytes per second each plugin sends, from the growth of its connections'
/// `in_bytes` between listings.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    window: Option<Window>,
}

/// Where a measurement started.
#[derive(Debug)]
struct Window {
    started: Instant,
    /// Each server's clock at the start.
    servers: HashMap<String, OffsetDateTime>,
    /// Each connection's `in_bytes` at the start (0 for one accepted since).
    sent: HashMap<(String, u64), u64>,
}

impl Meter {
    /// The bytes per second each plugin with a connection in `listing` sent since the window
    /// started; empty for the first listing, which only starts the window.
    ///
    /// The bytes are divided by the window's length, but never by less than `interval`: a check
    /// soon after another (a change of rights triggers one) cannot turn a burst within the
    /// allowance into a rate over it. The window restarts once it is `interval` long. A
    /// connection accepted during the window counts from 0; one that was there before but not
    /// listed (a page missed) counts from when it is first seen, so that bytes sent before the
    /// window are never counted in it. A connection that opens and closes between two listings
    /// is never seen.
    pub(crate) fn rates(
        &mut self,
        listing: &Listing,
        interval: Duration,
    ) -> HashMap<PluginId, u64> {
        let Some(window) = self.window.as_mut() else {
            self.window = Some(Window::start(listing));
            return HashMap::new();
        };
        let mut sent: HashMap<PluginId, u64> = HashMap::new();
        for connection in &listing.connections {
            let key = (connection.server.clone(), connection.cid);
            let before = *window.sent.entry(key).or_insert_with(|| {
                let new_since = window
                    .servers
                    .get(&connection.server)
                    .is_some_and(|started| connection.start >= *started);
                if new_since {
                    0
                } else {
                    connection.in_bytes
                }
            });
            *sent.entry(connection.plugin.clone()).or_default() +=
                connection.in_bytes.saturating_sub(before);
        }
        let elapsed = listing.at.saturating_duration_since(window.started);
        let seconds = elapsed.max(interval).as_secs_f64();
        if elapsed >= interval {
            *window = Window::start(listing);
        } else {
            for (server, now) in &listing.servers {
                window.servers.entry(server.clone()).or_insert(*now);
            }
        }
        sent.into_iter()
            // Rounded down: a rate is over its limit only when it surely is.
            .map(|(plugin, bytes)| (plugin, (bytes as f64 / seconds) as u64))
            .collect()
    }
}

impl Window {
    fn start(listing: &Listing) -> Self {
        Self {
            started: listing.at,
            servers: listing.servers.clone(),
            sent: listing
                .connections
                .iter()
                .map(|c| ((c.server.clone(), c.cid), c.in_bytes))
                .collect(),
        }
    }
}

/// What a plugin's connections are held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    /// It may connect: with rights of this fingerprint, within these limits.
    Current { fingerprint: String, limits: Limits },
    /// It may not connect at all (removed, disabled, no credential).
    Refused,
}

/// Why a connection is to be disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its rights are no longer those in force.
    Stale,
    /// Its plugin exceeded a quota.
    Over(QuotaExceeded),
}

/// The outcome of judging one listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Judgement {
    /// The connections to disconnect (indices into the listing), and why.
    pub(crate) kicks: Vec<(usize, Verdict)>,
    /// Each plugin's connections that remain.
    pub(crate) open: HashMap<PluginId, usize>,
}

/// Judges every connection of `listing` against its plugin's standing: stale connections go;
/// then, among the current ones, each holding more than `max_subscriptions`; then the newest
/// beyond `max_connections`; then, if the plugin sent more than `max_bytes_per_second`
/// (`rates`), all that remain. A plugin without a standing (its rights cannot be read now) is
/// left alone.
pub(crate) fn judge(
    listing: &Listing,
    standing: &HashMap<PluginId, Standing>,
    rates: &HashMap<PluginId, u64>,
) -> Judgement {
    let mut by_plugin: HashMap<&PluginId, Vec<usize>> = HashMap::new();
    for (index, connection) in listing.connections.iter().enumerate() {
        by_plugin.entry(&connection.plugin).or_default().push(index);
    }
    let mut judgement = Judgement::default();
    for (plugin, mut indices) in by_plugin {
        // Oldest first: the newest are the extras.
        indices.sort_by(|a, b| {
            let (a, b) = (&listing.connections[*a], &listing.connections[*b]);
            (a.start, &a.server, a.cid).cmp(&(b.start, &b.server, b.cid))
        });
        let (fingerprint, limits) = match standing.get(plugin) {
            None => {
                judgement.open.insert(plugin.clone(), indices.len());
                continue;
            }
            Some(Standing::Refused) => {
                judgement
                    .kicks
                    .extend(indices.iter().map(|i| (*i, Verdict::Stale)));
                judgement.open.insert(plugin.clone(), 0);
                continue;
            }
            Some(Standing::Current {
                fingerprint,
                limits,
            }) => (fingerprint, limits),
        };
        let mut kept = Vec::with_capacity(indices.len());
        for index in indices {
            let connection = &listing.connections[index];
            let max_subscriptions = limits.max_subscriptions.get();
            if connection.fingerprint != *fingerprint {
                judgement.kicks.push((index, Verdict::Stale));
            } else if connection.subscriptions > max_subscriptions {
                judgement.kicks.push((
                    index,
                    Verdict::Over(QuotaExceeded::Subscriptions {
                        limit: max_subscriptions,
                        observed: connection.subscriptions,
                    }),
                ));
            } else {
                kept.push(index);
            }
        }
        let max_connections = limits.max_connections.get();
        if kept.len() > max_connections as usize {
            let exceeded = QuotaExceeded::Connections {
                limit: max_connections,
                observed: kept.len(),
            };
            judgement.kicks.extend(
                kept.drain(max_connections as usize..)
                    .map(|i| (i, Verdict::Over(exceeded))),
            );
        }
        let max_rate = limits.max_bytes_per_second.get();
        if let Some(&rate) = rates
            .get(plugin)
            .filter(|rate| **rate > u64::from(max_rate))
        {
            let exceeded = QuotaExceeded::BytesPerSecond {
                limit: max_rate,
                observed: rate,
            };
            judgement
                .kicks
                .extend(kept.drain(..).map(|i| (i, Verdict::Over(exceeded))));
        }
        judgement.open.insert(plugin.clone(), kept.len());
    }
    judgement.kicks.sort_unstable_by_key(|(index, _)| *index);
    judgement
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn id(plugin: &str) -> PluginId {
        PluginId::new(plugin).unwrap()
    }

    fn limits(subscriptions: u32, connections: u32, bytes_per_second: u32) -> Limits {
        Limits {
            max_subscriptions: NonZeroU32::new(subscriptions).unwrap(),
            max_connections: NonZeroU32::new(connections).unwrap(),
            max_bytes_per_second: NonZeroU32::new(bytes_per_second).unwrap(),
            ..Limits::default()
        }
    }

    fn at_second(second: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + second).unwrap()
    }

    /// A connection of `plugin` on server `s1` with fingerprint `f`, accepted at `start`.
    fn connection(plugin: &str, cid: u64, start: i64) -> PluginConnection {
        PluginConnection {
            server: "s1".to_owned(),
            cid,
            plugin: id(plugin),
            fingerprint: "f".to_owned(),
            subscriptions: 1,
            in_bytes: 0,
            start: at_second(start),
        }
    }

    fn listing(at: Instant, now: i64, connections: Vec<PluginConnection>) -> Listing {
        Listing {
            asked: at,
            at,
            servers: HashMap::from([("s1".to_owned(), at_second(now))]),
            connections,
        }
    }

    fn current(limits: Limits) -> Standing {
        Standing::Current {
            fingerprint: "f".to_owned(),
            limits,
        }
    }

    #[test]
    fn connections_within_every_limit_are_kept() {
        let mut at_limit = connection("steady", 1, 0);
        at_limit.subscriptions = 5;
        let listed = listing(
            Instant::now(),
            10,
            vec![at_limit, connection("steady", 2, 1)],
        );
        let standing = HashMap::from([(id("steady"), current(limits(5, 2, 1024)))]);
        let rates = HashMap::from([(id("steady"), 1024)]);
        let judgement = judge(&listed, &standing, &rates);
        assert_eq!(judgement.kicks, []);
        assert_eq!(judgement.open, HashMap::from([(id("steady"), 2)]));
    }

    #[test]
    fn a_connection_over_max_subscriptions_goes_alone() {
        let mut over = connection("p", 2, 1);
        over.subscriptions = 6;
        let listed = listing(
            Instant::now(),
            10,
            vec![connection("p", 1, 0), over, connection("q", 3, 0)],
        );
        let standing = HashMap::from([
            (id("p"), current(limits(5, 8, 1024))),
            (id("q"), current(limits(1, 8, 1024))),
        ]);
        let judgement = judge(&listed, &standing, &HashMap::new());
        assert_eq!(
            judgement.kicks,
            [(
                1,
                Verdict::Over(QuotaExceeded::Subscriptions {
                    limit: 5,
                    observed: 6
                })
            )]
        );
        assert_eq!(judgement.open, HashMap::from([(id("p"), 1), (id("q"), 1)]));
    }

    #[test]
    fn the_newest_connections_beyond_max_connections_go() {
        // Listed out of order: cid 7 is the oldest, 3 and 9 the newest.
        let listed = listing(
            Instant::now(),
            10,
            vec![
                connection("p", 3, 5),
                connection("p", 7, 1),
                connection("p", 9, 6),
                connection("p", 8, 2),
            ],
        );
        let standing = HashMap::from([(id("p"), current(limits(5, 2, 1024)))]);
        let judgement = judge(&listed, &standing, &HashMap::new());
        let over = Verdict::Over(QuotaExceeded::Connections {
            limit: 2,
            observed: 4,
        });
        assert_eq!(judgement.kicks, [(0, over), (2, over)]);
        assert_eq!(judgement.open, HashMap::from([(id("p"), 2)]));
    }

    #[test]
    fn stale_connections_go_first_and_do_not_count() {
        let mut stale = connection("p", 1, 0);
        stale.fingerprint = "old".to_owned();
        let listed = listing(
            Instant::now(),
            10,
            vec![stale, connection("p", 2, 1), connection("gone", 3, 0)],
        );
        let standing = HashMap::from([
            (id("p"), current(limits(5, 1, 1024))),
            (id("gone"), Standing::Refused),
        ]);
        let judgement = judge(&listed, &standing, &HashMap::new());
        assert_eq!(judgement.kicks, [(0, Verdict::Stale), (2, Verdict::Stale)]);
        assert_eq!(
            judgement.open,
            HashMap::from([(id("p"), 1), (id("gone"), 0)])
        );
    }

    #[test]
    fn a_plugin_over_its_rate_loses_every_connection() {
        let listed = listing(
            Instant::now(),
            10,
            vec![connection("p", 1, 0), connection("p", 2, 1)],
        );
        let standing = HashMap::from([(id("p"), current(limits(5, 8, 1024)))]);
        let over = Verdict::Over(QuotaExceeded::BytesPerSecond {
            limit: 1024,
            observed: 1025,
        });
        let judgement = judge(&listed, &standing, &HashMap::from([(id("p"), 1025)]));
        assert_eq!(judgement.kicks, [(0, over), (1, over)]);
        assert_eq!(judgement.open, HashMap::from([(id("p"), 0)]));
    }

    #[test]
    fn a_plugin_whose_rights_cannot_be_read_is_left_alone() {
        let mut over = connection("p", 1, 0);
        over.subscriptions = 1_000_000;
        let listed = listing(Instant::now(), 10, vec![over]);
        let judgement = judge(
            &listed,
            &HashMap::new(),
            &HashMap::from([(id("p"), u64::MAX)]),
        );
        assert_eq!(judgement.kicks, []);
        assert_eq!(judgement.open, HashMap::from([(id("p"), 1)]));
    }

    #[test]
    fn rates_come_from_the_bytes_sent_between_listings() {
        let second = Duration::from_secs(1);
        let start = Instant::now();
        let mut meter = Meter::default();
        let mut old = connection("p", 1, 0);
        old.in_bytes = 1_000_000;
        // The first listing only starts the window: what was sent before is not a rate.
        assert!(meter
            .rates(&listing(start, 10, vec![old.clone()]), second)
            .is_empty());

        // Two seconds later: 4000 more bytes on the old connection, 2000 on one accepted
        // since, 500 on one accepted before but not listed then (not counted yet).
        old.in_bytes += 4000;
        let mut new = connection("p", 2, 11);
        new.in_bytes = 2000;
        let mut missed = connection("p", 3, 5);
        missed.in_bytes = 500;
        let later = listing(start + 2 * second, 12, vec![old.clone(), new, missed]);
        assert_eq!(
            meter.rates(&later, second),
            HashMap::from([(id("p"), 3000)])
        );

        // A check soon after: 600 bytes in 100 ms count as 600 bytes per second, not 6000.
        old.in_bytes += 600;
        let soon = listing(start + 2 * second + second / 10, 12, vec![old.clone()]);
        assert_eq!(meter.rates(&soon, second), HashMap::from([(id("p"), 600)]));
        // The window did not restart: the next full second counts those bytes too.
        old.in_bytes += 400;
        let next = listing(start + 3 * second, 13, vec![old]);
        assert_eq!(meter.rates(&next, second), HashMap::from([(id("p"), 1000)]));
    }

    #[test]
    fn a_login_beyond_max_connections_is_refused_once_counted() {
        let book = QuotaBook::new(Duration::from_secs(10));
        let p = id("p");
        let two = limits(5, 2, 1024);
        // Before any check the callout cannot count, and admits.
        for _ in 0..3 {
            assert_eq!(book.admit(&p, &two), Ok(()));
        }
        let listed = Instant::now();
        book.counted(HashMap::from([(p.clone(), 1)]), listed);
        assert_eq!(book.admit(&p, &two), Ok(()));
        assert_eq!(
            book.admit(&p, &two),
            Err(Refusal::OverQuota {
                plugin: p.clone(),
                exceeded: QuotaExceeded::Connections {
                    limit: 2,
                    observed: 3
                }
            })
        );
        // A plugin not seen at the last check starts from none.
        assert_eq!(book.admit(&id("q"), &two), Ok(()));

        // A check listed before the last login was admitted keeps counting it; one listed
        // after does not (it is in the listing, or gone).
        book.counted(HashMap::from([(p.clone(), 1)]), listed);
        assert!(book.admit(&p, &two).is_err());
        book.counted(HashMap::from([(p.clone(), 1)]), Instant::now());
        assert_eq!(book.admit(&p, &two), Ok(()));
    }

    #[test]
    fn a_plugin_over_a_quota_is_refused_for_the_cool_down() {
        let book = QuotaBook::new(Duration::from_secs(10));
        let p = id("p");
        let exceeded = QuotaExceeded::BytesPerSecond {
            limit: 1024,
            observed: 5000,
        };
        book.cool_down(&p, exceeded);
        let refusal = book.admit(&p, &Limits::default()).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::CoolingDown {
                plugin: p.clone(),
                exceeded,
                left_secs: 10
            }
        );
        assert_eq!(
            refusal.to_string(),
            "plugin `p` exceeded a quota (5000 bytes per second sent, over its \
             max_bytes_per_second of 1024): no new connection for 10 s"
        );
        assert_eq!(book.admit(&id("q"), &Limits::default()), Ok(()));

        let ended = QuotaBook::new(Duration::ZERO);
        ended.cool_down(&p, exceeded);
        assert_eq!(ended.admit(&p, &Limits::default()), Ok(()));
    }
}
