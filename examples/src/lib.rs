//! Runnable examples of the tp SDK; each example is a `[[bin]]` of this crate.
