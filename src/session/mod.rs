//! Sessions: the stored record, the `SessionStore` trait, the in-process cache in front of it,
//! and the store implementations (embedded on-disk; Redis next).

pub mod backend;
pub mod cache;
pub mod embedded;
mod entry;
pub mod invalidation;
pub mod locations;
mod owner_only;
pub mod record;
pub mod redis;
mod revoke;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod tunnels;

pub use cache::{CacheSettings, SessionCache};
pub use record::{Session, SessionRecord};
pub use store::{SessionStore, StoreError};
