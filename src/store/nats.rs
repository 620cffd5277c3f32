//! NATS store (todo)
