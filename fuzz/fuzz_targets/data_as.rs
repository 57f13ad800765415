//! Typed data decode (`Event::data_as`, what every handler, channel message and channel reply
//! goes through) into recursive types, in both content types: the first byte picks the content
//! type, the rest is the body. A stack overflow aborts the run.
#![no_main]

use std::collections::BTreeMap;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, Event, Tenant, TypedEvent};

#[derive(Serialize, Deserialize, Debug)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
    Pair(Box<Tree>, Box<Tree>),
    Named {
        left: Option<Box<Tree>>,
        items: Vec<Tree>,
    },
    Map(BTreeMap<String, Tree>),
    Text(String),
    Number(i64),
}

#[derive(Serialize, Deserialize, Debug)]
struct Order {
    order_id: String,
    total_cents: u64,
    tree: Tree,
}

impl TypedEvent for Order {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

#[derive(Serialize, Deserialize, Debug)]
struct Bare(Tree);

impl TypedEvent for Bare {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = if selector & 1 == 0 {
        ContentType::MessagePack
    } else {
        ContentType::Json
    };
    let seed = Bare(Tree::Leaf);
    let Ok(mut event) = Event::builder(Tenant::new("acme").unwrap(), "urn:fuzz")
        .content_type(content_type)
        .build(&seed)
    else {
        return;
    };
    event.data = Bytes::copy_from_slice(body);
    let _ = event.data_as::<Order>();
    let _ = event.data_as::<Bare>();
});
