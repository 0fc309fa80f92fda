//! Pod address allocation from the node's pod CIDRs, with a crash-safe
//! on-disk store.
//!
//! Used by the short-lived CNI plugin on every ADD, DEL, CHECK, GC and
//! STATUS, and by the node agent's sweep; there is no async runtime and no
//! daemon. Each network keeps its state in `<data_dir>/<network>/`:
//!
//! - `lock` — a flock, held exclusively for each read-modify-write, so any
//!   number of concurrent plugin processes serialise there;
//! - `reservations.json` — every reservation and the round-robin position,
//!   always replaced whole (temporary file, fsync, rename, fsync of the
//!   directory). A reservation is durable or absent, and a dual-stack
//!   allocation is one commit.
//!
//! Each attachment gets one address per family of the [`Pool`]; the
//! network address, the first host address (the node's own) and the IPv4
//! broadcast address are never handed out.
//!
//! ```no_run
//! use weft_ipam::{Attachment, Pool, Store};
//!
//! let pool = Pool::new(vec!["10.244.1.0/24".parse()?, "fd00:10:244:1::/64".parse()?])?;
//! let store = Store::open("/var/lib/cni/networks".as_ref(), "weft")?;
//! let allocation = store.allocate(&Attachment::new("0123abcd", "eth0"), &pool)?;
//! println!("{:?}", allocation.ips);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod disk;
mod error;
mod pool;
mod schema;
mod state;
mod store;
mod types;

pub use error::{Error, Result};
pub use pool::Pool;
pub use store::Store;
pub use types::{Allocation, Attachment, Reservation};
