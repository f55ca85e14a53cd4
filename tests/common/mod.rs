//! Helpers shared by integration tests (`mod common;` in a test file). Each helper starts what
//! it needs on 127.0.0.1 and stops it by pid; none of them sleeps to test timing.

#![allow(dead_code)]

pub mod attack;
pub mod http;
pub mod redis;
