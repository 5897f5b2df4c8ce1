//! An adversarial review of the answers relayed as received (session 8, `relay.rs`):
//! each test here failed against the code it was written for ("FIXED", the comment says
//! how) or guards a property nothing else covers ("GUARD").
