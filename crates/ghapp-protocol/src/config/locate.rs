//! Where in the config text something is: the line of a byte offset, the dotted key path
//! (`app[0].permissions.contents`) at an error's span, and the line of a key path. This is how
//! every config error names its line and key without changing the schema's field types.

use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// `name` in a table.
    Key(String),
    /// `[n]` in an array (of tables).
    Index(usize),
}

/// Renders a path as `app[0].permissions.contents`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses a path as [`render`] writes it (`daemon.policy[1].hosts`). A part that is not a
/// well-formed index is kept as a key, so the worst a malformed path does is name no line.
pub(crate) fn parse_path(text: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for part in text.split('.') {
        let (name, mut indices) = part
            .split_once('[')
            .map_or((part, ""), |(name, rest)| (name, rest));
        if !name.is_empty() {
            path.push(Seg::Key(name.to_string()));
        }
        while let Some((index, rest)) = indices.split_once(']') {
            match index.parse() {
                Ok(i) => path.push(Seg::Index(i)),
                Err(_) => path.push(Seg::Key(index.to_string())),
            }
            indices = rest.strip_prefix('[').unwrap_or(rest);
        }
    }
    path
}

/// The config text with its spanned syntax tree (when it parses).
pub(crate) struct Located<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Located<'a> {
    /// Parses `text` for spans; a text that does not parse simply has no key paths.
    pub(crate) fn new(text: &'a str) -> Self {
        Located {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The deepest key path whose key or value contains `span.start`, if any.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> Vec<Seg> {
        let mut path = Vec::new();
        if let Some(root) = &self.root {
            walk_table(root.get_ref(), span.start, &mut path);
        }
        path
    }

    /// The line where `path` is written (its key, or for an array element, its value).
    pub(crate) fn line_of_path(&self, path: &[Seg]) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut span: Option<Range<usize>> = None;
        let mut value: &DeValue<'_> = &DeValue::Boolean(false);
        let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
        for seg in path {
            match seg {
                Seg::Key(key) => {
                    let (k, v) = table?
                        .iter()
                        .find(|(k, _)| k.get_ref().as_ref() == key.as_str())?;
                    span = Some(k.span());
                    value = v.get_ref();
                }
                Seg::Index(i) => {
                    let DeValue::Array(array) = value else {
                        return None;
                    };
                    let item = array.get(*i)?;
                    span = Some(item.span());
                    value = item.get_ref();
                }
            }
            table = match value {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        span.map(|s| self.line_of(s.start))
    }
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (key, value) in table.iter() {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset);
        if in_key || in_value {
            path.push(Seg::Key(key.get_ref().to_string()));
            if in_value {
                walk_value(value.get_ref(), offset, path);
            }
            return true;
        }
    }
    // Tables written with headers (`[daemon]`) may not cover their body in the span; look inside.
    for (key, value) in table.iter() {
        let mut inner = vec![Seg::Key(key.get_ref().to_string())];
        if walk_value(value.get_ref(), offset, &mut inner) && inner.len() > 1 {
            path.extend(inner);
            return true;
        }
    }
    false
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
    match value {
        DeValue::Table(table) => walk_table(table, offset, path),
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                let mut inner = vec![Seg::Index(i)];
                let found = walk_value(item.get_ref(), offset, &mut inner);
                if found || item.span().contains(&offset) {
                    path.extend(inner);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[daemon]\nmin_ttl = \"30m\"\n\n[[app]]\nname = \"a\"\npermissions = { contents = \"write\" }\n\n[[app]]\nname = \"b\"\napp_id = 7\n";

    #[test]
    fn lines_of_paths() {
        let loc = Located::new(TEXT);
        let key = |s: &str| Seg::Key(s.into());
        assert_eq!(loc.line_of_path(&[key("daemon"), key("min_ttl")]), Some(2));
        assert_eq!(
            loc.line_of_path(&[key("app"), Seg::Index(1), key("app_id")]),
            Some(10)
        );
        assert_eq!(
            loc.line_of_path(&[
                key("app"),
                Seg::Index(0),
                key("permissions"),
                key("contents")
            ]),
            Some(6)
        );
        assert_eq!(loc.line_of_path(&[key("app"), Seg::Index(5)]), None);
    }

    #[test]
    fn paths_parse_back() {
        for text in [
            "daemon.policy[1].hosts",
            "app[0]",
            "daemon.min_ttl",
            "a[1][2].b",
        ] {
            assert_eq!(render(&parse_path(text)), text);
        }
        let loc = Located::new(TEXT);
        assert_eq!(loc.line_of_path(&parse_path("app[1].app_id")), Some(10));
    }

    #[test]
    fn path_at_offsets() {
        let loc = Located::new(TEXT);
        let offset = TEXT.find("7\n").unwrap();
        assert_eq!(render(&loc.path_at(&(offset..offset + 1))), "app[1].app_id");
        let offset = TEXT.find("\"write\"").unwrap();
        assert_eq!(
            render(&loc.path_at(&(offset..offset + 1))),
            "app[0].permissions.contents"
        );
        let offset = TEXT.find("\"30m\"").unwrap();
        assert_eq!(
            render(&loc.path_at(&(offset..offset + 1))),
            "daemon.min_ttl"
        );
    }
}
