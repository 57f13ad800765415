//! Where a key is in a manifest's text, so that a refusal can name the line at fault.

use toml::de::{DeTable, DeValue};

/// The 1-based line of the key at `path` (`plugin.core`, `dependencies.requires.geo-lookup`)
/// in the manifest text `source`; `None` when the text does not parse or has no such key.
pub fn key_line(source: &str, path: &str) -> Option<usize> {
    let document = DeTable::parse(source).ok()?;
    let mut table = document.get_ref();
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, value) = table.get_key_value(segment)?;
        if segments.peek().is_none() {
            let offset = key.span().start;
            return Some(source.get(..offset)?.matches('\n').count() + 1);
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_tables_and_inline_tables() {
        let source = "[plugin]\nid = \"a\"\ncore = \"^9\"\n\n[dependencies]\nrequires = { geo = \"^1\" }\nconflicts = [\"old\"]\n";
        assert_eq!(key_line(source, "plugin.core"), Some(3));
        assert_eq!(key_line(source, "dependencies.requires.geo"), Some(6));
        assert_eq!(key_line(source, "dependencies.conflicts"), Some(7));
        assert_eq!(key_line(source, "plugin.missing"), None);
        assert_eq!(key_line("not = [toml", "not"), None);
    }
}
