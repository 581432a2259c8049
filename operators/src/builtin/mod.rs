//! The built-in observers on the observation protocol, by name: `observe.enable` picks
//! them. Adding one is its file here and one line in the list below.

use std::sync::Arc;

use crate::protocol::DataflowObserver;

/// Declares each built-in observer's module and its entry in [`all`].
macro_rules! built_in {
    ($($module:ident :: $observer:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every built-in observer, by name.
        pub fn all() -> Vec<Arc<dyn DataflowObserver>> {
            vec![$(Arc::new($module::$observer) as Arc<dyn DataflowObserver>),*]
        }
    };
}

built_in! {
    freshness::Freshness,
    distinct_users::DistinctUsers,
}

/// The built-in observer named `name`.
pub fn named(name: &str) -> Option<Arc<dyn DataflowObserver>> {
    all().into_iter().find(|o| o.name() == name)
}

/// The names of all built-in observers.
pub fn names() -> Vec<String> {
    all().iter().map(|o| o.name().to_owned()).collect()
}
