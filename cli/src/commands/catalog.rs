//! `switchyard catalog`: the packages published to the deployment's package store.

use async_nats::jetstream;
use clap::Args;
use serde::Serialize;
use switchyard_control::package::{
    CatalogEntry, CatalogQuery, PackageStore, SignatureState, TrustStore, TrustedKeys,
};

use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::printable;
use crate::table::render_table;

#[derive(Debug, Args)]
pub(crate) struct CatalogArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Only plugins with this tag (ASCII case ignored).
    #[arg(long)]
    tag: Option<String>,
    /// Only plugins of this category (ASCII case ignored).
    #[arg(long)]
    category: Option<String>,
    /// Only plugins whose id, description, author, tags or category contain this text (case
    /// ignored).
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `catalog --json`.
#[derive(Debug, Serialize)]
struct CatalogReport {
    packages: Vec<CatalogEntry>,
}

pub(crate) async fn run(args: CatalogArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let js = jetstream::new(client);
    let ns = &args.namespace.prefix;
    let trust = match TrustStore::open_existing(&js, ns).await? {
        Some(store) => store.trusted_keys().await?,
        None => TrustedKeys::none(),
    };
    let store = PackageStore::open(&js, ns).await?;
    let query = CatalogQuery {
        tag: args.tag,
        category: args.category,
        search: args.search,
    };
    let packages: Vec<CatalogEntry> = store
        .catalog(&trust)
        .await?
        .into_iter()
        .filter(|entry| entry.matches(&query))
        .collect();
    if args.output.json {
        return print_json(&CatalogReport { packages });
    }
    if packages.is_empty() {
        println!("no package matches (in {})", store.bucket());
        return Ok(());
    }
    let rows: Vec<[String; 6]> = packages
        .iter()
        .map(|entry| {
            let publisher = match (entry.signature, &entry.publisher) {
                (SignatureState::Trusted, Some(key)) => format!(
                    "{} ({})",
                    short(key),
                    printable(entry.publisher_name.as_deref().unwrap_or("-"))
                ),
                (SignatureState::Untrusted, Some(key)) => format!("{} (NOT TRUSTED)", short(key)),
                (SignatureState::Unsigned, _) => "unsigned".to_owned(),
                (SignatureState::Bad, _) => "BAD SIGNATURE".to_owned(),
                _ => "UNREADABLE".to_owned(),
            };
            let description = match &entry.problem {
                Some(problem) => format!("[{}]", printable(problem)),
                None => printable(entry.description.as_deref().unwrap_or("")),
            };
            [
                entry
                    .id
                    .as_ref()
                    .map_or_else(|| printable(&entry.object), ToString::to_string),
                entry
                    .version
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                publisher,
                entry.category.clone().unwrap_or_else(|| "-".to_owned()),
                if entry.tags.is_empty() {
                    "-".to_owned()
                } else {
                    entry.tags.join(", ")
                },
                description,
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            [
                "PLUGIN",
                "VERSION",
                "PUBLISHER",
                "CATEGORY",
                "TAGS",
                "DESCRIPTION"
            ],
            &rows
        )
    );
    Ok(())
}

/// A key's first characters, enough to tell keys apart in a table.
fn short(key: &str) -> String {
    format!("{}…", key.chars().take(12).collect::<String>())
}
