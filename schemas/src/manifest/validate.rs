//! Reading a whole manifest out of a TOML table, section by section, reporting every problem.

use std::collections::BTreeMap;

use semver::VersionReq;
use toml::Table;

use super::error::{ProblemKind, Problems, Reported};
use super::limits::{
    Limits, MAX_BYTES_PER_SECOND_RANGE, MAX_CONNECTIONS_RANGE, MAX_PAYLOAD_RANGE,
    MAX_SUBSCRIPTIONS_RANGE,
};
use super::overlap;
use super::overrides::PolicyOverrides;
use super::pattern::{EventPattern, PatternError};
use super::read::{names_of, report_duplicates, Field, KeyPath, ReadList, Section};
use super::run::{read_run, RunPolicy};
use super::{
    ChannelGrants, Dependencies, Manifest, PluginInfo, Subscription, MAX_PATTERNS_PER_SUBSCRIPTION,
    MAX_SUBSCRIPTIONS, MAX_TAGS, MAX_TEXT_BYTES, MAX_URL_BYTES,
};
use crate::name::{ChannelName, PluginId, SubscriptionName, Tag};

const TOP_KEYS: &[&str] = &[
    "plugin",
    "defaults",
    "subscriptions",
    "channels",
    "operations",
    "limits",
    "run",
    "dependencies",
    "settings",
    "settings_schema",
];
const PLUGIN_KEYS: &[&str] = &[
    "id",
    "version",
    "core",
    "description",
    "author",
    "license",
    "homepage",
    "repository",
    "tags",
    "category",
];
const SUBSCRIPTION_KEYS: &[&str] = &["name", "events", "versions", "policy"];
const CHANNEL_KEYS: &[&str] = &["send", "receive"];
const LIMIT_KEYS: &[&str] = &[
    "max_subscriptions",
    "max_payload",
    "max_connections",
    "max_bytes_per_second",
];
const DEPENDENCY_KEYS: &[&str] = &["requires", "conflicts"];

/// Reads the manifest in `root`. Every problem goes to `problems`; the result is `Ok` only if
/// the manifest could be built, which it may be although problems were reported.
pub(super) fn read_manifest(root: &Table, problems: &mut Problems) -> Result<Manifest, Reported> {
    let document = Section::new(root, KeyPath::root(), TOP_KEYS, problems);
    let plugin = document
        .required("plugin", problems)
        .and_then(|f| read_plugin(&f, problems));
    let defaults = document
        .optional("defaults")
        .map(|f| PolicyOverrides::read(&f, problems))
        .unwrap_or_default();
    let subscriptions = document
        .optional("subscriptions")
        .map_or(Ok(Vec::new()), |f| {
            read_subscriptions(&f, &defaults, problems)
        });
    let channels = document
        .optional("channels")
        .map_or(Ok(ChannelGrants::default()), |f| {
            read_channels(&f, problems)
        });
    let operations = document.optional("operations").map_or(Ok(Vec::new()), |f| {
        super::operations::read_operations(&f, problems)
    });
    let limits = document
        .optional("limits")
        .map_or(Ok(Limits::default()), |f| read_limits(&f, problems));
    let run = document
        .optional("run")
        .map_or(Ok(RunPolicy::default()), |f| read_run(&f, problems));
    let dependencies = document
        .optional("dependencies")
        .map_or(Ok(Dependencies::default()), |f| {
            read_dependencies(&f, problems)
        });
    let settings = super::read_settings::read_settings(&document, problems);

    let (plugin, dependencies, (settings, settings_schema)) = (plugin?, dependencies?, settings?);
    check_dependencies_exclude(&plugin.id, &dependencies, problems);
    Ok(Manifest {
        plugin,
        subscriptions: subscriptions?,
        channels: channels?,
        operations: operations?,
        limits: limits?,
        run: run?,
        dependencies,
        settings,
        settings_schema,
    })
}

fn read_plugin(field: &Field<'_>, problems: &mut Problems) -> Result<PluginInfo, Reported> {
    let plugin = field.section(problems, PLUGIN_KEYS)?;
    let id = plugin.required("id", problems).and_then(|f| {
        let id = f.name::<PluginId>(problems)?;
        if id.is_reserved() {
            return Err(f.report(
                problems,
                ProblemKind::Reserved,
                format!("plugin id `{id}` is reserved for a trusted login"),
            ));
        }
        Ok(id)
    });
    let version = plugin
        .required("version", problems)
        .and_then(|f| f.version(problems));
    let core = plugin
        .required("core", problems)
        .and_then(|f| f.version_req(problems));
    let description = plugin
        .optional("description")
        .map(|f| f.string(problems).map(str::to_owned))
        .transpose();
    let author = plugin
        .optional("author")
        .map(|f| read_text(&f, problems))
        .transpose();
    let license = plugin
        .optional("license")
        .map(|f| read_text(&f, problems))
        .transpose();
    let homepage = plugin
        .optional("homepage")
        .map(|f| read_url(&f, problems))
        .transpose();
    let repository = plugin
        .optional("repository")
        .map(|f| read_url(&f, problems))
        .transpose();
    let tags = plugin
        .optional("tags")
        .map_or(Ok(Vec::new()), |f| read_tags(&f, problems));
    let category = plugin
        .optional("category")
        .map(|f| f.name::<Tag>(problems))
        .transpose();
    Ok(PluginInfo {
        id: id?,
        version: version?,
        core: core?,
        description: description?,
        author: author?,
        license: license?,
        homepage: homepage?,
        repository: repository?,
        tags: tags?,
        category: category?,
    })
}

/// A short text for people (`author`, `license`): not empty, no control characters, at most
/// [`MAX_TEXT_BYTES`].
fn read_text(field: &Field<'_>, problems: &mut Problems) -> Result<String, Reported> {
    let text = field.string(problems)?;
    check_text(field, text, MAX_TEXT_BYTES, problems)?;
    Ok(text.to_owned())
}

fn check_text(
    field: &Field<'_>,
    text: &str,
    max: usize,
    problems: &mut Problems,
) -> Result<(), Reported> {
    if text.len() > max {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!("{} bytes; at most {max} are allowed", text.len()),
        ));
    }
    if text.trim().is_empty() {
        return Err(field.report(problems, ProblemKind::BadText, "must not be empty"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(field.report(
            problems,
            ProblemKind::BadText,
            format!("holds the control character {c:?}"),
        ));
    }
    Ok(())
}

/// A `homepage` or `repository`: an `http://` or `https://` URL with a host, no whitespace, at
/// most [`MAX_URL_BYTES`].
fn read_url(field: &Field<'_>, problems: &mut Problems) -> Result<String, Reported> {
    let text = field.string(problems)?;
    check_text(field, text, MAX_URL_BYTES, problems)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    let host_present = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !host_present || text.chars().any(char::is_whitespace) {
        return Err(field.report(
            problems,
            ProblemKind::BadText,
            format!("`{text}` is not an http:// or https:// URL"),
        ));
    }
    Ok(text.to_owned())
}

fn read_tags(field: &Field<'_>, problems: &mut Problems) -> Result<Vec<Tag>, Reported> {
    let items = field.array(problems)?;
    if items.len() > MAX_TAGS {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} tags; a plugin may list at most {MAX_TAGS} (MAX_TAGS)",
                items.len()
            ),
        ));
    }
    let tags = ReadList::new(&items, problems, |item, problems| {
        item.name::<Tag>(problems)
    });
    report_duplicates(&tags.read, "tag", problems);
    tags.into_values()
}

fn read_subscriptions(
    field: &Field<'_>,
    defaults: &PolicyOverrides,
    problems: &mut Problems,
) -> Result<Vec<Subscription>, Reported> {
    let items = field.array(problems)?;
    if items.len() > MAX_SUBSCRIPTIONS {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} subscriptions; a manifest may have at most {MAX_SUBSCRIPTIONS} \
                 (MAX_SUBSCRIPTIONS)",
                items.len()
            ),
        ));
    }
    report_duplicates(&names_of(&items), "subscription name", problems);
    ReadList::new(&items, problems, |item, problems| {
        read_subscription(item, defaults, problems)
    })
    .into_values()
}

fn read_subscription(
    field: &Field<'_>,
    defaults: &PolicyOverrides,
    problems: &mut Problems,
) -> Result<Subscription, Reported> {
    let subscription = field.section(problems, SUBSCRIPTION_KEYS)?;
    let name = subscription
        .required("name", problems)
        .and_then(|f| f.name::<SubscriptionName>(problems));
    let events = subscription
        .required("events", problems)
        .and_then(|f| read_events(&f, problems));
    let versions = subscription
        .optional("versions")
        .map_or(Ok(VersionReq::STAR), |f| f.version_req(problems));
    let overrides = subscription
        .optional("policy")
        .map(|f| PolicyOverrides::read(&f, problems))
        .unwrap_or_default();
    Ok(Subscription {
        name: name?,
        events: events?,
        versions: versions?,
        policy: overrides.or(defaults).resolve(),
    })
}

fn read_events(field: &Field<'_>, problems: &mut Problems) -> Result<Vec<EventPattern>, Reported> {
    let items = field.non_empty_array(problems, "event pattern")?;
    if items.len() > MAX_PATTERNS_PER_SUBSCRIPTION {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} event patterns; a subscription may list at most {MAX_PATTERNS_PER_SUBSCRIPTION} \
                 (MAX_PATTERNS_PER_SUBSCRIPTION)",
                items.len()
            ),
        ));
    }
    let patterns = ReadList::new(&items, problems, read_pattern);
    report_duplicates(&patterns.read, "event pattern", problems);
    report_overlaps(&patterns.read, problems);
    patterns.into_values()
}

fn read_pattern(field: &Field<'_>, problems: &mut Problems) -> Result<EventPattern, Reported> {
    let text = field.string(problems)?;
    EventPattern::new(text).map_err(|err: PatternError| {
        field.report(problems, ProblemKind::BadPattern, err.to_string())
    })
}

/// Reports each pattern that covers, or is covered by, an earlier one (the first such), in
/// time linear in their number ([`overlap`]). Equal patterns are duplicates, reported as such.
fn report_overlaps(patterns: &[(KeyPath, EventPattern)], problems: &mut Problems) {
    let list: Vec<&EventPattern> = patterns.iter().map(|(_, pattern)| pattern).collect();
    let (found, _) = overlap::first_overlaps(&list);
    for ((key, pattern), earlier) in patterns.iter().zip(found) {
        if let Some((earlier_key, earlier)) = earlier.map(|position| &patterns[position]) {
            problems.report(
                key,
                ProblemKind::Overlap,
                format!(
                    "`{pattern}` overlaps `{earlier}` at {earlier_key}: one covers the other, \
                     and JetStream refuses a consumer whose filters overlap; keep the wider one"
                ),
            );
        }
    }
}

fn read_channels(field: &Field<'_>, problems: &mut Problems) -> Result<ChannelGrants, Reported> {
    let channels = field.section(problems, CHANNEL_KEYS)?;
    let send = channels
        .optional("send")
        .map_or(Ok(Vec::new()), |f| read_channel_list(&f, problems));
    let receive = channels
        .optional("receive")
        .map_or(Ok(Vec::new()), |f| read_channel_list(&f, problems));
    Ok(ChannelGrants {
        send: send?,
        receive: receive?,
    })
}

fn read_channel_list(
    field: &Field<'_>,
    problems: &mut Problems,
) -> Result<Vec<ChannelName>, Reported> {
    let items = field.array(problems)?;
    let channels = ReadList::new(&items, problems, |f, p| f.name::<ChannelName>(p));
    report_duplicates(&channels.read, "channel", problems);
    channels.into_values()
}

/// `[limits]`: each key optional, each missing one at its default.
fn read_limits(field: &Field<'_>, problems: &mut Problems) -> Result<Limits, Reported> {
    let limits = field.section(problems, LIMIT_KEYS)?;
    let defaults = Limits::default();
    let max_subscriptions = limits
        .optional("max_subscriptions")
        .map_or(Ok(defaults.max_subscriptions), |f| {
            f.count_up_to(problems, *MAX_SUBSCRIPTIONS_RANGE.end())
        });
    let max_payload = limits
        .optional("max_payload")
        .map_or(Ok(defaults.max_payload), |f| {
            f.size_in(problems, MAX_PAYLOAD_RANGE)
        });
    let max_connections = limits
        .optional("max_connections")
        .map_or(Ok(defaults.max_connections), |f| {
            f.count_up_to(problems, *MAX_CONNECTIONS_RANGE.end())
        });
    let max_bytes_per_second = limits
        .optional("max_bytes_per_second")
        .map_or(Ok(defaults.max_bytes_per_second), |f| {
            f.size_in(problems, MAX_BYTES_PER_SECOND_RANGE)
        });
    Ok(Limits {
        max_subscriptions: max_subscriptions?,
        max_payload: max_payload?,
        max_connections: max_connections?,
        max_bytes_per_second: max_bytes_per_second?,
    })
}

fn read_dependencies(field: &Field<'_>, problems: &mut Problems) -> Result<Dependencies, Reported> {
    let dependencies = field.section(problems, DEPENDENCY_KEYS)?;
    let requires = dependencies
        .optional("requires")
        .map_or(Ok(BTreeMap::new()), |f| read_requires(&f, problems));
    let conflicts = dependencies
        .optional("conflicts")
        .map_or(Ok(Vec::new()), |f| read_conflicts(&f, problems));
    let (requires, conflicts) = (requires?, conflicts?);
    for (position, id) in conflicts.iter().enumerate() {
        if requires.contains_key(id) {
            problems.report(
                &dependencies.key("conflicts").index(position),
                ProblemKind::Inconsistent,
                format!("`{id}` is also in `requires`; a plugin cannot need and refuse it"),
            );
        }
    }
    Ok(Dependencies {
        requires,
        conflicts,
    })
}

/// `{ plugin-id = "version range", ... }`
fn read_requires(
    field: &Field<'_>,
    problems: &mut Problems,
) -> Result<BTreeMap<PluginId, VersionReq>, Reported> {
    let table = field.table(problems)?;
    let mut failed = None;
    let mut requires = BTreeMap::new();
    for (name, value) in table {
        let entry = Field {
            value,
            key: field.key.child(name),
        };
        let id = PluginId::new(name.as_str())
            .map_err(|err| entry.report(problems, ProblemKind::BadName, err.to_string()));
        match (id, entry.version_req(problems)) {
            (Ok(id), Ok(range)) => {
                requires.insert(id, range);
            }
            (Err(reported), _) | (_, Err(reported)) => failed = Some(reported),
        }
    }
    failed.map_or(Ok(requires), Err)
}

fn read_conflicts(field: &Field<'_>, problems: &mut Problems) -> Result<Vec<PluginId>, Reported> {
    let items = field.array(problems)?;
    let ids = ReadList::new(&items, problems, |f, p| f.name::<PluginId>(p));
    report_duplicates(&ids.read, "plugin id", problems);
    ids.into_values()
}

/// A plugin can neither require nor conflict with itself.
fn check_dependencies_exclude(
    own: &PluginId,
    dependencies: &Dependencies,
    problems: &mut Problems,
) {
    let requires = KeyPath::root().child("dependencies").child("requires");
    if dependencies.requires.contains_key(own) {
        problems.report(
            &requires.child(own.as_str()),
            ProblemKind::Inconsistent,
            format!("plugin `{own}` cannot require itself"),
        );
    }
    let conflicts = KeyPath::root().child("dependencies").child("conflicts");
    for (position, id) in dependencies.conflicts.iter().enumerate() {
        if id == own {
            problems.report(
                &conflicts.index(position),
                ProblemKind::Inconsistent,
                format!("plugin `{own}` cannot conflict with itself"),
            );
        }
    }
}
