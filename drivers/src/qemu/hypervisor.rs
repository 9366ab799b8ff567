//! Placeholder: being written (see the module list in `qemu/mod.rs`).
