//! What flows through the service: the contract's payloads ([`payload`]), the ticket
//! every job carries ([`ticket`]) with its [`timeline`], and the actor messages
//! ([`pipeline`]).

pub mod payload;
pub mod pipeline;
pub mod ticket;
pub mod timeline;
