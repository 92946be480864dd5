//! Helpers shared by the EDW's server tests (`mod common;` in a test file).
#![allow(dead_code)]

pub mod bulk;
pub mod smart;
