//! Shared helpers for tp's cross-crate integration and interop tests.
