//! Teleport resources in their YAML/JSON form.
