//! What both parsers of a record value share: the interned field paths ([`Schema`]) and
//! the buffered values of a record ([`Event`]). The fast scanner (`fast.rs`) and the
//! serde path (`walk.rs`) both write into them, and the observers read the events
//! through [`super::RecordView`]; this module depends on neither parser.
//!
//! Field paths are interned in a tree of keys, so a record whose keys were seen before
//! allocates nothing: a key is found by comparing it with the sibling that followed the
//! previous key last time (records of one producer keep their key order), then by a
//! scan or, for wide objects, a hash map.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Nesting levels flattened into dotted paths; deeper objects are counted as objects
/// (and their emptiness), their contents not profiled.
pub const MAX_DEPTH: u32 = 32;

/// Siblings with more keys than this are also indexed by a hash map.
const SCAN_LIMIT: usize = 24;

/// The keys under one field (or the root), in the order first seen.
#[derive(Debug, Default)]
struct Children {
    keys: Vec<(Box<str>, u32)>,
    /// Position in `keys` by key, for wide objects.
    map: Option<HashMap<Box<str>, usize>>,
    /// Index in `keys` of the key expected next.
    guess: usize,
}

/// The dotted path of every interned field, by field id; shared with the parsed batches
/// (only ever appended to, so an id stays valid for as long as its batch lives).
pub(crate) type Names = Rc<RefCell<Vec<Box<str>>>>;

/// The interned field paths.
#[derive(Debug)]
pub(crate) struct Schema {
    names: Names,
    /// Children of each field, by field id.
    children: Vec<Children>,
    root: Children,
    /// Fields interned (the length of `names` and `children`).
    len: usize,
    max_fields: usize,
}

impl Schema {
    /// An empty schema that interns at most `max_fields` fields.
    pub(crate) fn new(max_fields: usize) -> Schema {
        Schema { names: Rc::default(), children: Vec::new(), root: Children::default(), len: 0, max_fields }
    }

    /// Fields interned so far; their ids are `0..field_count()`.
    #[inline]
    pub(crate) fn field_count(&self) -> usize {
        self.len
    }

    /// Whether no more fields can be interned.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.max_fields
    }

    /// The dotted path of every field, by field id.
    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    /// The id of `key` under `parent` (the root when `None`); interns it if new, `intern`
    /// is set and there is room.
    #[inline]
    pub(crate) fn child(&mut self, parent: Option<u32>, key: &str, intern: bool) -> Option<u32> {
        let children = match parent {
            None => &mut self.root,
            Some(p) => self.children.get_mut(p as usize)?,
        };
        if let Some((k, id)) = children.keys.get(children.guess) {
            if &**k == key {
                children.guess += 1;
                return Some(*id);
            }
        }
        let found = match &children.map {
            Some(map) => map.get(key).copied(),
            None => children.keys.iter().position(|(k, _)| &**k == key),
        };
        if let Some((position, (_, id))) = found.and_then(|p| children.keys.get(p).map(|k| (p, k))) {
            children.guess = position + 1;
            return Some(*id);
        }
        if !intern || self.len >= self.max_fields {
            return None;
        }
        let id = u32::try_from(self.len).ok()?;
        children.keys.push((key.into(), id));
        children.guess = children.keys.len();
        if children.keys.len() > SCAN_LIMIT {
            let map = children.map.get_or_insert_with(HashMap::new);
            for (position, (k, _)) in children.keys.iter().enumerate() {
                map.entry(k.clone()).or_insert(position);
            }
        }
        let mut names = self.names.borrow_mut();
        let name: Box<str> = match parent {
            None => key.into(),
            Some(p) => {
                let parent_name = names.get(p as usize).map_or("", |n| &**n);
                format!("{parent_name}.{key}").into()
            }
        };
        names.push(name);
        self.len += 1;
        self.children.push(Children::default());
        Some(id)
    }
}

/// One value of a parsed record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event {
    Null(u32),
    Bool(u32, bool),
    Int(u32, i64),
    /// An integer above `i64::MAX`.
    UInt(u32, u64),
    Float(u32, f64),
    /// A string: its range in the scratch text.
    Str(u32, u32, u32),
    Array(u32, bool),
    /// An object, whether it is empty, and the index (among the events) of its first
    /// child's event.
    Object(u32, bool, u32),
    /// A value under a field beyond `max_fields`.
    Dropped,
    /// An object nested deeper than [`MAX_DEPTH`], not descended.
    TooDeep,
}
