//! Findings of the review of the gateway's own HTTP/1.1 server loop (`edge::h1`): each
//! test shows a client-visible behaviour the loop must keep.
