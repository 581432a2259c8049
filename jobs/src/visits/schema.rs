//! The fixed tree of fields of a visit record, the per-record state of each field
//! (natural, nulled, emptied, removed) that faults set, and the classification of a
//! dotted path in a record from that state alone: the same answer an independent JSON
//! parse of the written record gives.

/// A field of the record, in writing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    VisitId,
    EventTime,
    UserId,
    KeepPrivate,
    Page,
    Context,
    Referral,
    AdId,
    User,
    Technical,
    Ip,
    Login,
    ConnectedSince,
    Browser,
    BrowserVersion,
    NetworkType,
    DeviceType,
    DeviceVersion,
}

/// Number of [`Node`]s.
pub(crate) const NODE_COUNT: usize = 18;

/// The fields of the top-level object, in writing order.
pub(crate) const TOP_LEVEL: [Node; 6] = [Node::VisitId, Node::EventTime, Node::UserId, Node::KeepPrivate, Node::Page, Node::Context];

/// Every field inside `context`, objects included: the targets of nested nulls.
pub(crate) const NESTED: [Node; 12] = [
    Node::Referral,
    Node::AdId,
    Node::User,
    Node::Technical,
    Node::Ip,
    Node::Login,
    Node::ConnectedSince,
    Node::Browser,
    Node::BrowserVersion,
    Node::NetworkType,
    Node::DeviceType,
    Node::DeviceVersion,
];

const CONTEXT_CHILDREN: [Node; 4] = [Node::Referral, Node::AdId, Node::User, Node::Technical];
const USER_CHILDREN: [Node; 3] = [Node::Ip, Node::Login, Node::ConnectedSince];
const TECHNICAL_CHILDREN: [Node; 5] = [Node::Browser, Node::BrowserVersion, Node::NetworkType, Node::DeviceType, Node::DeviceVersion];

impl Node {
    /// Index into per-record state arrays.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The JSON key.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Node::VisitId => "visit_id",
            Node::EventTime => "event_time",
            Node::UserId => "user_id",
            Node::KeepPrivate => "keep_private",
            Node::Page => "page",
            Node::Context => "context",
            Node::Referral => "referral",
            Node::AdId => "ad_id",
            Node::User => "user",
            Node::Technical => "technical",
            Node::Ip => "ip",
            Node::Login => "login",
            Node::ConnectedSince => "connected_since",
            Node::Browser => "browser",
            Node::BrowserVersion => "browser_version",
            Node::NetworkType => "network_type",
            Node::DeviceType => "device_type",
            Node::DeviceVersion => "device_version",
        }
    }

    /// The fields of an object node (empty for leaves).
    pub(crate) const fn children(self) -> &'static [Node] {
        match self {
            Node::Context => &CONTEXT_CHILDREN,
            Node::User => &USER_CHILDREN,
            Node::Technical => &TECHNICAL_CHILDREN,
            _ => &[],
        }
    }
}

/// What a record does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mode {
    /// Its generated value (which may itself be `null` or absent: `referral`, `ad_id`,
    /// `connected_since`).
    #[default]
    Natural,
    /// `null`.
    Null,
    /// `""`.
    Empty,
    /// Key absent.
    Missing,
}

/// The state of every field of one record.
pub(crate) type Modes = [Mode; NODE_COUNT];

/// Natural gaps of a visit: fields that are `null` or absent without any fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Natural {
    /// `context.referral` is `null`.
    pub referral_null: bool,
    /// `context.ad_id` is `null`.
    pub ad_id_null: bool,
    /// `context.user.connected_since` is absent.
    pub connected_since_absent: bool,
}

impl Natural {
    fn absent(self, node: Node) -> bool {
        node == Node::ConnectedSince && self.connected_since_absent
    }

    fn null(self, node: Node) -> bool {
        (node == Node::Referral && self.referral_null) || (node == Node::AdId && self.ad_id_null)
    }
}

/// How a path reads in one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Present with a non-empty value.
    Valid,
    /// The key (or one of its parents) is absent, or a parent is not an object.
    Missing,
    /// `null`.
    Null,
    /// `""`.
    EmptyString,
    /// `[]` (never generated; counted for completeness).
    #[allow(dead_code)]
    EmptyArray,
    /// `{}`.
    EmptyObject,
}

/// The chain of nodes a dotted path names, from the top; `None` when the path is not
/// in the record's shape (it then reads as missing in every record).
pub(crate) fn resolve(path: &str) -> Option<Vec<Node>> {
    let mut chain = Vec::new();
    let mut level: &[Node] = &TOP_LEVEL;
    for segment in path.split('.') {
        let node = *level.iter().find(|n| n.name() == segment)?;
        chain.push(node);
        level = node.children();
    }
    Some(chain)
}

/// Whether `node` appears as a key in its (present) parent.
fn present(node: Node, modes: &Modes, natural: Natural) -> bool {
    match modes[node.index()] {
        Mode::Missing => false,
        Mode::Natural => !natural.absent(node),
        Mode::Null | Mode::Empty => true,
    }
}

/// How the path `chain` reads in a record with these field states.
pub(crate) fn classify(chain: &[Node], modes: &Modes, natural: Natural) -> Kind {
    let Some((&last, parents)) = chain.split_last() else { return Kind::Missing };
    // Every parent must be a present object; a nulled, emptied or removed one hides the path.
    if parents.iter().any(|p| modes[p.index()] != Mode::Natural) {
        return Kind::Missing;
    }
    match modes[last.index()] {
        Mode::Missing => Kind::Missing,
        Mode::Null => Kind::Null,
        Mode::Empty => Kind::EmptyString,
        Mode::Natural if natural.absent(last) => Kind::Missing,
        Mode::Natural if natural.null(last) => Kind::Null,
        Mode::Natural => {
            let children = last.children();
            if !children.is_empty() && !children.iter().any(|c| present(*c, modes, natural)) {
                Kind::EmptyObject
            } else {
                Kind::Valid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_along_the_tree() {
        assert_eq!(resolve("event_time"), Some(vec![Node::EventTime]));
        assert_eq!(resolve("context.user.login"), Some(vec![Node::Context, Node::User, Node::Login]));
        assert_eq!(resolve("context.login"), None);
        assert_eq!(resolve("page.x"), None);
        assert_eq!(resolve(""), None);
        for (i, node) in TOP_LEVEL.iter().chain(NESTED.iter()).enumerate() {
            assert_eq!(node.index(), i);
        }
    }

    #[test]
    fn parents_hide_children() {
        let mut modes = [Mode::Natural; NODE_COUNT];
        let natural = Natural::default();
        let login = resolve("context.user.login").expect("in the shape");
        assert_eq!(classify(&login, &modes, natural), Kind::Valid);
        modes[Node::Context.index()] = Mode::Null;
        assert_eq!(classify(&login, &modes, natural), Kind::Missing);
        assert_eq!(classify(&[Node::Context], &modes, natural), Kind::Null);
        modes[Node::Context.index()] = Mode::Natural;
        modes[Node::Login.index()] = Mode::Empty;
        assert_eq!(classify(&login, &modes, natural), Kind::EmptyString);
        let since = resolve("context.user.connected_since").expect("in the shape");
        assert_eq!(classify(&since, &modes, Natural { connected_since_absent: true, ..natural }), Kind::Missing);
        assert_eq!(classify(&[Node::Context, Node::Referral], &modes, Natural { referral_null: true, ..natural }), Kind::Null);
    }
}
