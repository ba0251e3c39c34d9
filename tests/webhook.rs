//! GitHub webhook: signed, real-shaped deliveries through the router
//! (in-process, `oneshot`) and through `keysentry daemon`, against the GitHub
//! simulator (`keysentry-sim`).

mod daemon;
mod delivery;
mod endpoint;
mod harness;
mod limits;
mod push;
mod refs;
