//! Line and column of every key and sequence item of a YAML document, so that
//! errors found after parsing (in merged or resolved values) can still point
//! at the text the user wrote.

use super::Seg;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct Locations {
    by_path: HashMap<Vec<Seg>, Location>,
}

impl Locations {
    /// Indexes `text`; a document the indexer cannot read yields an empty index
    /// (serde_yaml reports the syntax error itself).
    pub fn index(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        Locations {
            by_path: builder.by_path,
        }
    }

    /// The location of the longest prefix of `path` present in the document.
    pub fn find(&self, path: &[Seg]) -> Option<Location> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.by_path.get(&path[..n]).copied())
    }
}

enum Frame {
    Map { path: Vec<Seg>, key: Option<String> },
    Seq { path: Vec<Seg>, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    by_path: HashMap<Vec<Seg>, Location>,
}

impl Builder {
    fn at(mark: Marker) -> Location {
        Location {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }

    /// A node starts: returns its path (recording sequence items; map values
    /// keep their key's location).
    fn begin_node(&mut self, mark: Marker) -> Vec<Seg> {
        match self.stack.last() {
            None => {
                self.by_path.entry(Vec::new()).or_insert(Self::at(mark));
                Vec::new()
            }
            Some(Frame::Map { path, key }) => {
                let mut p = path.clone();
                p.push(Seg::Key(key.clone().unwrap_or_default()));
                p
            }
            Some(Frame::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(Seg::Index(*index));
                self.by_path.insert(p.clone(), Self::at(mark));
                p
            }
        }
    }

    /// A node ended: the parent moves on to its next key or item.
    fn end_node(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn scalar(&mut self, value: String, mark: Marker) {
        if let Some(Frame::Map {
            path,
            key: key @ None,
        }) = self.stack.last_mut()
        {
            let mut p = path.clone();
            p.push(Seg::Key(value.clone()));
            self.by_path.insert(p, Self::at(mark));
            *key = Some(value);
            return;
        }
        self.begin_node(mark);
        self.end_node();
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => self.scalar(value, mark),
            Event::Alias(_) => {
                self.begin_node(mark);
                self.end_node();
            }
            Event::MappingStart(..) => {
                let path = self.begin_node(mark);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.begin_node(mark);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_node();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::dotted;

    #[test]
    fn finds_keys_and_items() {
        let text = "name: x\ndefaults:\n  model: {d_model: 48, heads: 4}\ngrid:\n  task.name: [copy, revrse]\n";
        let loc = Locations::index(text);
        assert_eq!(
            loc.find(&dotted("defaults.model.d_model")),
            Some(Location {
                line: 3,
                column: 11
            })
        );
        let mut grid = dotted("grid");
        grid.push(Seg::Key("task.name".into()));
        grid.push(Seg::Index(1));
        assert_eq!(
            loc.find(&grid),
            Some(Location {
                line: 5,
                column: 21
            })
        );
        // Missing leaves fall back to the nearest existing ancestor.
        assert_eq!(
            loc.find(&dotted("defaults.train.lr")),
            Some(Location { line: 2, column: 1 })
        );
    }
}
